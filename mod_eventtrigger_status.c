/* Licensed under the Apache License, Version 2.0. */
/*
 * SetHandler eventtrigger-status: what the outbox holds, per site and
 * endpoint - HTML for people, ?json for machines, ?prometheus for
 * scrapers - and a section in mod_status's page. A POST replays dead
 * letters (replay=TXN or replay_since=TIME).
 *
 * Everything shown is read from the outbox, so every child (and every
 * httpd sharing a PostgreSQL outbox) shows the same figures; but for the
 * outbox's own state and the requests refused and events lost because
 * it could not store them (mod_eventtrigger_guard.c): those are this
 * httpd's, from the memory its processes share, counted since it
 * started (a restart counts from 0). When the outbox cannot be read, the
 * page says so with 503 and still shows those.
 */

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "util_script.h"
#include "mod_status.h"

#include <stdlib.h>

#include <apr_strings.h>
#include <apr_uri.h>
#include <jansson.h>

#include "mod_eventtrigger.h"
#include "et_json.h"
#include "et_circuit.h"
#include "et_retry.h"
#include "et_trace.h"
#include "et_guard.h"

#define ET_STATUS_RECENT   10         /* failures listed */
#define ET_STATUS_SAMPLES  1000       /* deliveries behind the percentiles */

/* One site's figures, gathered from the outbox. */
typedef struct site_view_t {
    const char *name;
    const char *endpoint;             /* NULL: no longer configured */
    const char *proxy;                /* URL (no credentials), env, NULL */
    et_site_counts_t counts;
    const et_circuit_row_t *circuit;
    apr_array_header_t *totals;       /* of apr_interval_time_t */
    apr_interval_time_t p50, p99;
    apr_uint32_t refused, lost;       /* this httpd's, since it started */
    et_bs_view_t before;              /* before-save decisions, likewise */
} site_view_t;

typedef struct status_t {
    apr_array_header_t *sites;        /* site_view_t * */
    apr_array_header_t *recent;       /* et_event_t * */
    apr_time_t now;
    int unreadable;                   /* the outbox could not be read */
    et_guard_view_t outbox;
    int have_outbox;
    int held_back;                    /* SQLite: the reserve given up, the
                                       * dispatcher writes nothing */
} status_t;

/* The trace id of @a e's calls (see docs/operations.md, Tracing). */
static const char *event_trace(apr_pool_t *p, const et_event_t *e)
{
    return et_trace_id(p, e->traceparent, e->txn);
}

static int want_arg(const request_rec *r, const char *name)
{
    apr_size_t n = strlen(name);
    const char *a = r->args;

    while (a && *a) {
        if (!strncmp(a, name, n) && (a[n] == '\0' || a[n] == '&'
                                     || a[n] == '=')) {
            return 1;
        }
        a = strchr(a, '&');
        a = a ? a + 1 : NULL;
    }
    return 0;
}

static const et_site_t *site_of(server_rec *s, const char *site)
{
    for (; s; s = s->next) {
        et_srv_conf_t *c = et_srv_conf(s);
        if (c->site.name && c->site.endpoint && !strcmp(c->site.name, site)) {
            return &c->site;
        }
    }
    return NULL;
}

static site_view_t *view_of(status_t *st, apr_pool_t *p, server_rec *s,
                            const char *name)
{
    site_view_t *v;
    const et_site_t *conf;
    int i;

    for (i = 0; i < st->sites->nelts; i++) {
        v = APR_ARRAY_IDX(st->sites, i, site_view_t *);
        if (!strcmp(v->name, name)) {
            return v;
        }
    }
    v = apr_pcalloc(p, sizeof(*v));
    v->name = name;
    conf = site_of(et_g.main_server ? et_g.main_server : s, name);
    if (conf) {
        v->endpoint = conf->endpoint;
        /* the URL is kept without credentials: it can be shown */
        v->proxy = conf->proxy.mode == ET_PROXY_URL ? conf->proxy.url
                   : conf->proxy.mode == ET_PROXY_ENV ? "env" : NULL;
    }
    v->totals = apr_array_make(p, 64, sizeof(apr_interval_time_t));
    APR_ARRAY_PUSH(st->sites, site_view_t *) = v;
    return v;
}

static int cmp_interval(const void *a, const void *b)
{
    apr_interval_time_t x = *(const apr_interval_time_t *)a;
    apr_interval_time_t y = *(const apr_interval_time_t *)b;

    return x < y ? -1 : x > y;
}

static apr_interval_time_t percentile(apr_array_header_t *a, int pct)
{
    int idx;

    if (!a->nelts) {
        return 0;
    }
    idx = (a->nelts * pct + 99) / 100 - 1;
    return APR_ARRAY_IDX(a, idx < 0 ? 0 : idx, apr_interval_time_t);
}

static apr_status_t gather(request_rec *r, status_t *st)
{
    server_rec *s = r->server;
    apr_array_header_t *counts, *circuits, *lat;
    et_conn_t *conn;
    apr_status_t rv;
    server_rec *vs;
    int i;

    st->now = apr_time_now();
    st->sites = apr_array_make(r->pool, 8, sizeof(site_view_t *));
    st->recent = apr_array_make(r->pool, 1, sizeof(et_event_t *));
    if ((rv = et_conn_get(&conn, r)) != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, r,
                      "ET00050: status: no outbox connection");
        return rv;
    }
    if ((rv = et_outbox_site_counts(conn->ob, r->pool, &counts))
        != APR_SUCCESS
        || (rv = et_outbox_circuits(conn->ob, r->pool, &circuits))
           != APR_SUCCESS
        || (rv = et_outbox_recent_errors(conn->ob, r->pool, ET_STATUS_RECENT,
                                         &st->recent)) != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "ET00051: status: %s",
                      et_outbox_error(conn->ob));
        et_conn_put(conn, 1);
        return rv;
    }

    /* every configured site, even one without events yet */
    for (vs = et_g.main_server ? et_g.main_server : s; vs; vs = vs->next) {
        et_srv_conf_t *c = et_srv_conf(vs);
        if (c->site.endpoint) {
            view_of(st, r->pool, s, c->site.name);
        }
    }
    for (i = 0; i < counts->nelts; i++) {
        et_site_counts_t *c = APR_ARRAY_IDX(counts, i, et_site_counts_t *);
        view_of(st, r->pool, s, c->site)->counts = *c;
    }
    for (i = 0; i < circuits->nelts; i++) {
        et_circuit_row_t *c = APR_ARRAY_IDX(circuits, i, et_circuit_row_t *);
        view_of(st, r->pool, s, c->site)->circuit = c;
    }
    for (i = 0; i < st->sites->nelts; i++) {
        site_view_t *v = APR_ARRAY_IDX(st->sites, i, site_view_t *);
        int k;

        /* each site's own latest deliveries: an index range, newest first */
        if (et_outbox_latencies(conn->ob, r->pool, v->name, ET_STATUS_SAMPLES,
                                &lat) != APR_SUCCESS) {
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                          "ET00055: status: delivery times of site %s: %s",
                          v->name, et_outbox_error(conn->ob));
            et_conn_put(conn, 1);
            return APR_EGENERAL;
        }
        for (k = 0; k < lat->nelts; k++) {
            APR_ARRAY_PUSH(v->totals, apr_interval_time_t) =
                APR_ARRAY_IDX(lat, k, et_latency_t).total;
        }
        qsort(v->totals->elts, v->totals->nelts, sizeof(apr_interval_time_t),
              cmp_interval);
        v->p50 = percentile(v->totals, 50);
        v->p99 = percentile(v->totals, 99);
    }
    et_conn_put(conn, 0);
    return APR_SUCCESS;
}

/* The outbox's state and each site's refused and lost counts; when the
 * outbox could not be read (@a unreadable), the configured sites alone. */
static void gather_guard(request_rec *r, status_t *st, int unreadable)
{
    const et_guard_t *g = et_guard_shared();
    const et_space_t *sp;
    server_rec *vs;

    if (unreadable) {
        st->unreadable = 1;
        st->sites = apr_array_make(r->pool, 8, sizeof(site_view_t *));
        st->recent = apr_array_make(r->pool, 1, sizeof(et_event_t *));
    }
    if (!g) {
        return;
    }
    st->have_outbox = 1;
    et_guard_view(g, &st->outbox);
    /* what the dispatcher checks before it writes: the file itself, not
     * the last check's figure */
    sp = et_guard_space();
    st->held_back = sp && !et_reserve_held(sp->reserve_path, sp->reserve);
    for (vs = et_g.main_server ? et_g.main_server : r->server; vs;
         vs = vs->next) {
        et_srv_conf_t *c = et_srv_conf(vs);
        site_view_t *v;

        if (!c->site.endpoint) {
            continue;
        }
        v = view_of(st, r->pool, r->server, c->site.name);
        et_guard_site_counts(g, c->guard_idx, &v->refused, &v->lost);
        et_guard_before_view(g, c->guard_idx, &v->before);
    }
}

/* A site's before-save decisions as a JSON object. */
static json_t *before_json(const et_bs_view_t *b)
{
    json_t *j = json_object();
    int k;

    for (k = 0; k < ET_BS_KINDS; k++) {
        json_object_set_new(j, et_bs_kind_name((et_bs_kind_e)k),
                            json_integer(b->count[k]));
    }
    json_object_set_new(j, "latency_ms",
                        json_pack("{s:f,s:f,s:i}", "p50", b->p50_ms,
                                  "p99", b->p99_ms, "calls", (int)b->calls));
    return j;
}

static const char *circuit_name(const site_view_t *v)
{
    return et_circuit_state_name(v->circuit ? (et_cb_state_e)v->circuit->state
                                            : ET_CB_CLOSED);
}

static apr_int64_t oldest_s(const status_t *st, const site_view_t *v)
{
    return v->counts.counts.oldest_pending
           ? (apr_int64_t)apr_time_sec(st->now - v->counts.counts.oldest_pending)
           : 0;
}

static double ms(apr_interval_time_t t)
{
    return (double)t / 1000.0;
}

static void emit_json(request_rec *r, const status_t *st)
{
    json_t *root = json_object(), *sites = json_array(), *recent = json_array();
    apr_int64_t tot[6] = { 0, 0, 0, 0, 0, 0 };
    const char *text;
    apr_size_t len;
    int i;

    for (i = 0; i < st->sites->nelts; i++) {
        const site_view_t *v = APR_ARRAY_IDX(st->sites, i, site_view_t *);
        const et_outbox_counts_t *c = &v->counts.counts;

        json_array_append_new(sites, json_pack(
            "{s:s,s:s?,s:s?,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:{s:f,s:f,s:i},"
            "s:{s:s,s:i,s:s?},s:i,s:i,s:o}",
            "site", v->name, "endpoint", v->endpoint, "proxy", v->proxy,
            "pending", (json_int_t)c->pending,
            "in_flight", (json_int_t)c->leased,
            "retrying", (json_int_t)v->counts.retrying,
            "delivered", (json_int_t)c->delivered,
            "dead", (json_int_t)c->dead,
            "failed", (json_int_t)c->failed,
            "oldest_pending_age_s", (json_int_t)oldest_s(st, v),
            "latency_ms", "p50", ms(v->p50), "p99", ms(v->p99),
            "samples", v->totals->nelts,
            "circuit", "state", circuit_name(v),
            "failures", v->circuit ? v->circuit->failures : 0,
            "last_error", v->circuit ? v->circuit->last_error : NULL,
            "refused", (int)v->refused, "lost", (int)v->lost,
            "before", before_json(&v->before)));
        tot[0] += c->pending;
        tot[1] += c->leased;
        tot[2] += v->counts.retrying;
        tot[3] += c->delivered;
        tot[4] += c->dead;
        tot[5] += c->failed;
    }
    for (i = 0; i < st->recent->nelts; i++) {
        const et_event_t *e = APR_ARRAY_IDX(st->recent, i, et_event_t *);
        json_array_append_new(recent, json_pack(
            "{s:s,s:s,s:s?,s:s,s:s?,s:i,s:i,s:s?,s:s?}",
            "txn", e->txn, "site", e->site,
            "object", et_object_name(e->object),
            "event", et_event_name(e->event), "id", e->oid,
            "attempts", e->attempts, "status", e->last_status,
            "error", e->error, "trace", event_trace(r->pool, e)));
    }
    json_object_set_new(root, "pending", json_integer(tot[0]));
    json_object_set_new(root, "in_flight", json_integer(tot[1]));
    json_object_set_new(root, "retrying", json_integer(tot[2]));
    json_object_set_new(root, "delivered", json_integer(tot[3]));
    json_object_set_new(root, "dead", json_integer(tot[4]));
    json_object_set_new(root, "failed", json_integer(tot[5]));
    json_object_set_new(root, "sites", sites);
    if (st->have_outbox) {
        const et_guard_view_t *o = &st->outbox;

        json_object_set_new(root, "outbox", json_pack(
            "{s:s,s:b,s:I,s:I,s:I,s:I,s:I,s:b}",
            "state", et_ob_state_name(o->state),
            "writable", o->state == ET_OB_WRITABLE
                        || o->state == ET_OB_UNKNOWN,
            "free_bytes", (json_int_t)o->avail,
            "reserve_bytes", (json_int_t)o->reserve,
            "refusing_since", (json_int_t)(o->refusing_since
                                           ? apr_time_sec(o->refusing_since)
                                           : 0),
            "refused", (json_int_t)o->refused,
            "lost", (json_int_t)o->lost,
            "readable", !st->unreadable));
        json_object_set_new(json_object_get(root, "outbox"),
                            "deliveries_held_back",
                            json_boolean(st->held_back));
        if (et_g.spool) {
            /* PostgreSQL's local spool (EventTriggerSpool), this machine's */
            json_t *ob = json_object_get(root, "outbox");

            json_object_set_new(ob, "spool", json_string(et_g.spool + 8));
            json_object_set_new(ob, "spooled", json_integer(o->spool));
            json_object_set_new(ob, "spooled_total",
                                json_integer((json_int_t)o->spooled));
            json_object_set_new(ob, "forwarded_total",
                                json_integer((json_int_t)o->forwarded));
        }
    }
    json_object_set_new(root, "recent_failures", recent);
    et_json_pool_own(r->pool, root);
    text = et_json_dump(r->pool, root, &len);
    ap_set_content_type(r, "application/json");
    if (!r->header_only) {
        ap_rwrite(text, (int)len, r);
        ap_rputs("\n", r);
    }
}

/* A Prometheus label value: backslash, quote and newline escaped. */
static const char *prom_label(apr_pool_t *p, const char *s)
{
    apr_size_t n = 0;
    const char *q;
    char *out, *o;

    for (q = s; *q; q++) {
        n += (*q == '\\' || *q == '"' || *q == '\n') ? 2 : 1;
    }
    o = out = apr_palloc(p, n + 1);
    for (q = s; *q; q++) {
        if (*q == '\\' || *q == '"' || *q == '\n') {
            *o++ = '\\';
            *o++ = *q == '\n' ? 'n' : *q;
        }
        else {
            *o++ = *q;
        }
    }
    *o = '\0';
    return out;
}

static void emit_prometheus(request_rec *r, const status_t *st)
{
    static const char *const states[] = {
        "pending", "in_flight", "retrying", "delivered", "dead", "failed"
    };
    int i, k;

    ap_set_content_type(r, "text/plain; version=0.0.4");
    if (r->header_only) {
        return;
    }
    ap_rputs("# HELP eventtrigger_events Events in the outbox, by site and "
             "state.\n# TYPE eventtrigger_events gauge\n", r);
    for (i = 0; i < st->sites->nelts; i++) {
        const site_view_t *v = APR_ARRAY_IDX(st->sites, i, site_view_t *);
        const et_outbox_counts_t *c = &v->counts.counts;
        apr_int64_t n[6];

        n[0] = c->pending;
        n[1] = c->leased;
        n[2] = v->counts.retrying;
        n[3] = c->delivered;
        n[4] = c->dead;
        n[5] = c->failed;
        for (k = 0; k < 6; k++) {
            ap_rprintf(r, "eventtrigger_events{site=\"%s\",state=\"%s\"} %"
                       APR_INT64_T_FMT "\n", prom_label(r->pool, v->name),
                       states[k], n[k]);
        }
    }
    ap_rputs("# HELP eventtrigger_oldest_pending_seconds Age of the oldest "
             "pending event.\n# TYPE eventtrigger_oldest_pending_seconds "
             "gauge\n", r);
    for (i = 0; i < st->sites->nelts; i++) {
        const site_view_t *v = APR_ARRAY_IDX(st->sites, i, site_view_t *);
        ap_rprintf(r, "eventtrigger_oldest_pending_seconds{site=\"%s\"} %"
                   APR_INT64_T_FMT "\n", prom_label(r->pool, v->name),
                   oldest_s(st, v));
    }
    ap_rputs("# HELP eventtrigger_delivery_seconds Capture to delivery, over "
             "the latest deliveries.\n# TYPE eventtrigger_delivery_seconds "
             "summary\n", r);
    for (i = 0; i < st->sites->nelts; i++) {
        const site_view_t *v = APR_ARRAY_IDX(st->sites, i, site_view_t *);
        const char *site = prom_label(r->pool, v->name);
        ap_rprintf(r, "eventtrigger_delivery_seconds{site=\"%s\","
                   "quantile=\"0.5\"} %.6f\n", site, v->p50 / 1e6);
        ap_rprintf(r, "eventtrigger_delivery_seconds{site=\"%s\","
                   "quantile=\"0.99\"} %.6f\n", site, v->p99 / 1e6);
    }
    if (st->have_outbox) {
        const et_guard_view_t *o = &st->outbox;

        ap_rprintf(r, "# HELP eventtrigger_outbox_writable 1 while write "
                   "requests are admitted (the outbox can store their "
                   "events).\n# TYPE eventtrigger_outbox_writable gauge\n"
                   "eventtrigger_outbox_writable %d\n",
                   o->state == ET_OB_WRITABLE || o->state == ET_OB_UNKNOWN);
        if (o->avail >= 0) {
            ap_rprintf(r, "# HELP eventtrigger_outbox_free_bytes Room left "
                       "on the SQLite outbox's filesystem, besides the "
                       "reserve.\n# TYPE eventtrigger_outbox_free_bytes "
                       "gauge\neventtrigger_outbox_free_bytes %"
                       APR_OFF_T_FMT "\n", o->avail);
        }
        if (et_guard_space()) {
            ap_rprintf(r, "# HELP eventtrigger_deliveries_held_back 1 while "
                       "the SQLite outbox's reserve is given up: the "
                       "dispatcher records no outcome and claims nothing."
                       "\n# TYPE eventtrigger_deliveries_held_back gauge\n"
                       "eventtrigger_deliveries_held_back %d\n",
                       st->held_back);
        }
        ap_rprintf(r, "# HELP eventtrigger_outbox_refusing_since_seconds "
                   "Since when write requests are refused (Unix time), 0 "
                   "if they are not.\n# TYPE "
                   "eventtrigger_outbox_refusing_since_seconds gauge\n"
                   "eventtrigger_outbox_refusing_since_seconds %"
                   APR_TIME_T_FMT "\n", apr_time_sec(o->refusing_since));
        if (et_g.spool) {
            ap_rprintf(r, "# HELP eventtrigger_spool_events Events in this "
                       "machine's local spool, waiting for the outbox "
                       "(write requests are refused while there are any)."
                       "\n# TYPE eventtrigger_spool_events gauge\n"
                       "eventtrigger_spool_events %u\n"
                       "# HELP eventtrigger_spooled_total Events stored in "
                       "the local spool because the outbox could not take "
                       "them.\n# TYPE eventtrigger_spooled_total counter\n"
                       "eventtrigger_spooled_total %" APR_UINT64_T_FMT "\n"
                       "# HELP eventtrigger_spool_forwarded_total Events "
                       "moved from the local spool into the outbox.\n"
                       "# TYPE eventtrigger_spool_forwarded_total counter\n"
                       "eventtrigger_spool_forwarded_total %" APR_UINT64_T_FMT
                       "\n", o->spool, o->spooled, o->forwarded);
        }
        ap_rputs("# HELP eventtrigger_refused_total Write requests refused "
                 "(503 before the console) because the outbox could not "
                 "store their events.\n# TYPE eventtrigger_refused_total "
                 "counter\n", r);
        for (i = 0; i < st->sites->nelts; i++) {
            const site_view_t *v = APR_ARRAY_IDX(st->sites, i, site_view_t *);
            ap_rprintf(r, "eventtrigger_refused_total{site=\"%s\"} %u\n",
                       prom_label(r->pool, v->name), v->refused);
        }
        ap_rputs("# HELP eventtrigger_before_total Before-save decisions "
                 "(EventTriggerBefore) by outcome.\n# TYPE "
                 "eventtrigger_before_total counter\n", r);
        for (i = 0; i < st->sites->nelts; i++) {
            const site_view_t *v = APR_ARRAY_IDX(st->sites, i, site_view_t *);
            int k;

            for (k = 0; k < ET_BS_KINDS; k++) {
                ap_rprintf(r, "eventtrigger_before_total{site=\"%s\","
                           "outcome=\"%s\"} %u\n",
                           prom_label(r->pool, v->name),
                           et_bs_kind_name((et_bs_kind_e)k),
                           v->before.count[k]);
            }
        }
        ap_rputs("# HELP eventtrigger_before_latency_ms Before-save call "
                 "time, to the upper bound of its bucket.\n# TYPE "
                 "eventtrigger_before_latency_ms gauge\n", r);
        for (i = 0; i < st->sites->nelts; i++) {
            const site_view_t *v = APR_ARRAY_IDX(st->sites, i, site_view_t *);
            const char *l = prom_label(r->pool, v->name);

            ap_rprintf(r, "eventtrigger_before_latency_ms{site=\"%s\","
                       "quantile=\"0.5\"} %g\n"
                       "eventtrigger_before_latency_ms{site=\"%s\","
                       "quantile=\"0.99\"} %g\n", l, v->before.p50_ms, l,
                       v->before.p99_ms);
        }
        ap_rputs("# HELP eventtrigger_lost_total Events whose store failed "
                 "after the console answered (ET00032).\n# TYPE "
                 "eventtrigger_lost_total counter\n", r);
        for (i = 0; i < st->sites->nelts; i++) {
            const site_view_t *v = APR_ARRAY_IDX(st->sites, i, site_view_t *);
            ap_rprintf(r, "eventtrigger_lost_total{site=\"%s\"} %u\n",
                       prom_label(r->pool, v->name), v->lost);
        }
    }
    ap_rputs("# HELP eventtrigger_endpoint_paused 1 while the site's "
             "endpoint is paused (circuit open or probing).\n"
             "# TYPE eventtrigger_endpoint_paused gauge\n", r);
    for (i = 0; i < st->sites->nelts; i++) {
        const site_view_t *v = APR_ARRAY_IDX(st->sites, i, site_view_t *);
        ap_rprintf(r, "eventtrigger_endpoint_paused{site=\"%s\"} %d\n",
                   prom_label(r->pool, v->name),
                   v->circuit && v->circuit->state != ET_CB_CLOSED);
    }
}

static void emit_html_tables(request_rec *r, const status_t *st)
{
    int i;

    if (st->have_outbox) {
        const et_guard_view_t *o = &st->outbox;

        ap_rprintf(r, "<p>Outbox: <b>%s</b>%s%s%s%s%s; write requests "
                   "refused: %" APR_UINT64_T_FMT ", events lost: %"
                   APR_UINT64_T_FMT "%s</p>\n",
                   et_ob_state_name(o->state),
                   o->avail >= 0 ? ", free: " : "",
                   o->avail >= 0 ? apr_off_t_toa(r->pool, o->avail) : "",
                   o->avail >= 0 ? " bytes" : "",
                   o->refusing_since ? ", refusing since " : "",
                   o->refusing_since
                   ? ap_ht_time(r->pool, o->refusing_since,
                                "%Y-%m-%d %H:%M:%S %Z", 1) : "",
                   o->refused, o->lost,
                   st->unreadable ? " (the outbox cannot be read now)" : "");
        if (st->held_back) {
            ap_rputs("<p><b>Deliveries wait</b>: the outbox's reserve is "
                     "given up to the events of admitted requests; the "
                     "dispatcher records no outcome and claims nothing "
                     "until it is held again (ET01059).</p>\n", r);
        }
        if (et_g.spool) {
            ap_rprintf(r, "<p>Local spool %s: <b>%u</b> event(s) waiting "
                       "for the outbox; stored there since the start: %"
                       APR_UINT64_T_FMT ", forwarded: %" APR_UINT64_T_FMT
                       "</p>\n", ap_escape_html(r->pool, et_g.spool + 8),
                       o->spool, o->spooled, o->forwarded);
        }
    }
    ap_rputs("<table border=\"1\" cellpadding=\"3\">\n<tr><th>site</th>"
             "<th>endpoint</th><th>pending</th><th>in flight</th>"
             "<th>retrying</th><th>delivered</th><th>dead</th>"
             "<th>failed</th><th>oldest pending</th><th>p50</th>"
             "<th>p99</th><th>endpoint health</th><th>refused</th>"
             "<th>lost</th><th>before-save: proceed / enriched / refused / "
             "failed open / failed closed (p50, p99)</th></tr>\n", r);
    for (i = 0; i < st->sites->nelts; i++) {
        const site_view_t *v = APR_ARRAY_IDX(st->sites, i, site_view_t *);
        const et_outbox_counts_t *c = &v->counts.counts;

        ap_rprintf(r, "<tr><td>%s</td><td>%s</td><td>%" APR_INT64_T_FMT
                   "</td><td>%" APR_INT64_T_FMT "</td><td>%" APR_INT64_T_FMT
                   "</td><td>%" APR_INT64_T_FMT "</td><td>%" APR_INT64_T_FMT
                   "</td><td>%" APR_INT64_T_FMT "</td><td>%" APR_INT64_T_FMT
                   " s</td><td>%.1f ms</td><td>%.1f ms</td><td>%s%s%s</td>"
                   "<td>%u</td><td>%u</td><td>%u / %u / %u / %u / %u "
                   "(%g ms, %g ms)</td></tr>\n",
                   ap_escape_html(r->pool, v->name),
                   v->endpoint
                   ? apr_pstrcat(r->pool, ap_escape_html(r->pool, v->endpoint),
                                 v->proxy ? " (proxy: " : "",
                                 v->proxy ? ap_escape_html(r->pool, v->proxy)
                                          : "", v->proxy ? ")" : "", NULL)
                   : "(not configured)",
                   c->pending, c->leased, v->counts.retrying, c->delivered,
                   c->dead, c->failed, oldest_s(st, v), ms(v->p50),
                   ms(v->p99), circuit_name(v),
                   v->circuit && v->circuit->last_error ? ": " : "",
                   v->circuit && v->circuit->last_error
                   ? ap_escape_html(r->pool, v->circuit->last_error) : "",
                   v->refused, v->lost, v->before.count[ET_BS_PROCEED],
                   v->before.count[ET_BS_ENRICHED],
                   v->before.count[ET_BS_REFUSED],
                   v->before.count[ET_BS_FAILED_OPEN],
                   v->before.count[ET_BS_FAILED_CLOSED], v->before.p50_ms,
                   v->before.p99_ms);
    }
    ap_rputs("</table>\n", r);
}

static void emit_html(request_rec *r, const status_t *st)
{
    int i;

    ap_set_content_type(r, "text/html; charset=utf-8");
    if (r->header_only) {
        return;
    }
    ap_rputs(DOCTYPE_HTML_4_01
             "<html><head><title>Event Trigger status</title>\n"
             "<meta http-equiv=\"Content-Type\" content=\"text/html; "
             "charset=utf-8\"></head>\n<body><h1>Event Trigger status</h1>\n",
             r);
    emit_html_tables(r, st);
    ap_rputs("<h2>Recent failures</h2>\n", r);
    if (!st->recent->nelts) {
        ap_rputs("<p>None.</p>\n", r);
    }
    else {
        ap_rputs("<table border=\"1\" cellpadding=\"3\">\n<tr><th>txn</th>"
                 "<th>site</th><th>object</th><th>event</th><th>id</th>"
                 "<th>attempts</th><th>status</th><th>error</th>"
                 "<th>trace</th></tr>\n", r);
        for (i = 0; i < st->recent->nelts; i++) {
            const et_event_t *e = APR_ARRAY_IDX(st->recent, i, et_event_t *);
            const char *trace = event_trace(r->pool, e);

            ap_rprintf(r, "<tr><td><code>%s</code></td><td>%s</td><td>%s</td>"
                       "<td>%s</td><td>%s</td><td>%d</td><td>%d</td>"
                       "<td>%s</td><td><code>%s</code></td></tr>\n",
                       ap_escape_html(r->pool, e->txn),
                       ap_escape_html(r->pool, e->site),
                       et_object_name(e->object) ? et_object_name(e->object)
                                                 : "-",
                       et_event_name(e->event),
                       ap_escape_html(r->pool, e->oid ? e->oid : ""),
                       e->attempts, e->last_status,
                       ap_escape_html(r->pool, e->error ? e->error : ""),
                       trace ? trace : "-");
        }
        ap_rputs("</table>\n", r);
    }
    ap_rputs("<p>Also as <a href=\"?json\">JSON</a> and "
             "<a href=\"?prometheus\">Prometheus</a> text.</p>\n"
             "</body></html>\n", r);
}

/* A form value as a string, bounded. */
static const char *form_value(request_rec *r, ap_form_pair_t *pair)
{
    apr_off_t len;
    apr_size_t size;
    char *buf;

    apr_brigade_length(pair->value, 1, &len);
    if (len < 0 || len > 256) {
        return NULL;
    }
    size = (apr_size_t)len;
    buf = apr_palloc(r->pool, size + 1);
    apr_brigade_flatten(pair->value, buf, &size);
    buf[size] = '\0';
    return buf;
}

/* Browsers send Origin on a cross-site POST: refuse it (CSRF). */
static int same_origin(request_rec *r)
{
    const char *origin = apr_table_get(r->headers_in, "Origin");
    const char *host = apr_table_get(r->headers_in, "Host");
    apr_uri_t u;

    if (!origin) {
        return 1;
    }
    if (!host || apr_uri_parse(r->pool, origin, &u) != APR_SUCCESS
        || !u.hostinfo) {
        return 0;
    }
    return strcasecmp(u.hostinfo, host) == 0;
}

static int handle_replay(request_rec *r)
{
    apr_array_header_t *pairs = NULL;
    const char *txn = NULL, *since_s = NULL;
    apr_time_t since = 0;
    et_conn_t *conn;
    apr_status_t rv;
    int n = 0, status;
    json_t *j;
    const char *text;
    apr_size_t len;

    if (!same_origin(r)) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                      "ET00052: status: replay refused: Origin is another "
                      "site");
        return HTTP_FORBIDDEN;
    }
    status = ap_parse_form_data(r, NULL, &pairs, 8, 4096);
    if (status != OK) {
        return status;
    }
    while (pairs && !apr_is_empty_array(pairs)) {
        ap_form_pair_t *pair = apr_array_pop(pairs);
        if (!strcmp(pair->name, "replay")) {
            txn = form_value(r, pair);
        }
        else if (!strcmp(pair->name, "replay_since")) {
            since_s = form_value(r, pair);
        }
    }
    if ((!txn && !since_s) || (txn && since_s)
        || (since_s && et_time_parse(since_s, apr_time_now(), &since)
                       != APR_SUCCESS)) {
        return HTTP_BAD_REQUEST;
    }
    if ((rv = et_conn_get(&conn, r)) != APR_SUCCESS) {
        return HTTP_SERVICE_UNAVAILABLE;
    }
    rv = et_outbox_replay(conn->ob, txn, since, &n);
    if (rv != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "ET00053: status: %s",
                      et_outbox_error(conn->ob));
    }
    et_conn_put(conn, rv != APR_SUCCESS);
    if (rv != APR_SUCCESS) {
        return HTTP_SERVICE_UNAVAILABLE;
    }
    ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, r,
                  "ET00054: status: %d dead letter(s) replayed (%s%s)", n,
                  txn ? "txn=" : "since ",
                  ap_escape_logitem(r->pool, txn ? txn : since_s));
    if (n) {
        et_wake_dispatcher();
    }
    j = json_pack("{s:i}", "replayed", n);
    et_json_pool_own(r->pool, j);
    text = et_json_dump(r->pool, j, &len);
    ap_set_content_type(r, "application/json");
    ap_rwrite(text, (int)len, r);
    ap_rputs("\n", r);
    return OK;
}

int et_status_handler(request_rec *r)
{
    status_t st;

    if (!r->handler || strcmp(r->handler, ET_STATUS_HANDLER)) {
        return DECLINED;
    }
    r->allowed = (AP_METHOD_BIT << M_GET) | (AP_METHOD_BIT << M_POST);
    if (r->method_number == M_POST) {
        return handle_replay(r);
    }
    if (r->method_number != M_GET) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    if (!et_g.store) {
        return HTTP_SERVICE_UNAVAILABLE;      /* no site sends anything */
    }
    memset(&st, 0, sizeof(st));
    if (gather(r, &st) != APR_SUCCESS) {
        if (!et_guard_shared()) {
            return HTTP_SERVICE_UNAVAILABLE;
        }
        /* what this httpd knows without the outbox, answered 503 */
        gather_guard(r, &st, 1);
        r->status = HTTP_SERVICE_UNAVAILABLE;
    }
    else {
        gather_guard(r, &st, 0);
    }
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    if (want_arg(r, "json")) {
        emit_json(r, &st);
    }
    else if (want_arg(r, "prometheus")) {
        emit_prometheus(r, &st);
    }
    else {
        emit_html(r, &st);
    }
    return OK;
}

/* mod_status: a section of its page (or lines of ?auto). */
static int et_mod_status_hook(request_rec *r, int flags)
{
    status_t st;
    apr_int64_t pending = 0, dead = 0, delivered = 0;
    int i;

    memset(&st, 0, sizeof(st));
    if (!et_g.store || !et_g.outboxes || gather(r, &st) != APR_SUCCESS) {
        return OK;
    }
    gather_guard(r, &st, 0);
    for (i = 0; i < st.sites->nelts; i++) {
        const site_view_t *v = APR_ARRAY_IDX(st.sites, i, site_view_t *);
        pending += v->counts.counts.pending;
        dead += v->counts.counts.dead;
        delivered += v->counts.counts.delivered;
    }
    if (flags & AP_STATUS_SHORT) {
        ap_rprintf(r, "EventTriggerPending: %" APR_INT64_T_FMT "\n"
                   "EventTriggerDelivered: %" APR_INT64_T_FMT "\n"
                   "EventTriggerDead: %" APR_INT64_T_FMT "\n",
                   pending, delivered, dead);
        return OK;
    }
    ap_rputs("<hr>\n<h2>Event Trigger</h2>\n", r);
    emit_html_tables(r, &st);
    return OK;
}

void et_status_register_hooks(void)
{
    APR_OPTIONAL_HOOK(ap, status_hook, et_mod_status_hook, NULL, NULL,
                      APR_HOOK_MIDDLE);
}
