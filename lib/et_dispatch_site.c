/* Licensed under the Apache License, Version 2.0. */
/*
 * The dispatcher's per-site state: its endpoint's circuit (et_circuit.h:
 * paused after failures, probed, resumed), kept in memory for the claims
 * and written to the outbox for the status page and the next dispatcher,
 * and whether its last claim took all that was due.
 *
 * Thread safety: called on the claiming thread, the calling thread (an
 * attempt's outcome, a probe given back) and the intake's thread (the
 * gate of a fresh event). The state and its hash are guarded by
 * d->cb_lock, which every function here takes itself unless it says "with
 * d->cb_lock held"; no other lock is taken under it. circuit_store takes
 * the outbox's locks (etd_ob_enter) with d->cb_lock released.
 * etd_load_circuits and etd_load_sites run in setup, before any thread.
 */

#include <apr_strings.h>

#include "et_dispatch_int.h"

/* The state of @a site; call with d->cb_lock held. */
site_state_t *etd_site_state(dispatcher_t *d, const char *site)
{
    site_state_t *st = apr_hash_get(d->circuits, site, APR_HASH_KEY_STRING);

    if (!st) {
        st = apr_pcalloc(d->cb_pool, sizeof(*st));
        apr_hash_set(d->circuits, apr_pstrdup(d->cb_pool, site),
                     APR_HASH_KEY_STRING, st);
    }
    return st;
}

/* When the first paused endpoint may be probed (APR_INT64_MAX if none
 * is paused): its due events wait for that, not for a due time. */
apr_time_t etd_pause_ends(dispatcher_t *d)
{
    apr_time_t first = APR_INT64_MAX;
    apr_hash_index_t *hi;

    apr_thread_mutex_lock(d->cb_lock);
    for (hi = apr_hash_first(NULL, d->circuits); hi; hi = apr_hash_next(hi)) {
        const site_state_t *st = apr_hash_this_val(hi);

        if (st->cb.state == ET_CB_OPEN && st->cb.open_until < first) {
            first = st->cb.open_until;
        }
    }
    apr_thread_mutex_unlock(d->cb_lock);
    return first;
}

/* The circuit of @a site; call with d->cb_lock held. */
static et_circuit_t *circuit_of(dispatcher_t *d, const char *site)
{
    return &etd_site_state(d, site)->cb;
}

/* Write a circuit's state where claims (and the status page) see it. */
static void circuit_store(dispatcher_t *d, apr_pool_t *p, const char *site,
                          const et_circuit_t *c, apr_time_t open_until,
                          const char *error)
{
    et_circuit_row_t row;

    row.site = site;
    row.state = c->state;
    row.failures = c->failures;
    row.open_until = open_until;
    row.changed = apr_time_now();
    row.last_error = error;
    etd_ob_enter(d);
    if (et_outbox_circuit_set(d->ob, &row) != APR_SUCCESS) {
        et_log(&d->log, ET_LOG_ERR, p,
               "ET01013: cannot record the health of site %s: "
               "%s", site, et_outbox_error(d->ob));
    }
    etd_ob_leave(d);
}

/* After an attempt: count it against the endpoint, log a change once. */
void etd_circuit_after(dispatcher_t *d, apr_pool_t *p, const et_site_t *site,
                       const et_event_t *ev, const et_http_response_t *resp,
                       const char *error)
{
    int st = resp->status;
    int healthy = st != 0 && st != 408 && st != 429 && st < 500;
    et_circuit_t *c, snap;
    int before;

    apr_thread_mutex_lock(d->cb_lock);
    c = circuit_of(d, ev->site);
    before = et_circuit_record(c, &site->circuit, healthy, apr_time_now());
    snap = *c;
    apr_thread_mutex_unlock(d->cb_lock);

    if (before < 0) {
        return;
    }
    circuit_store(d, p, ev->site, &snap,
                  snap.state == ET_CB_OPEN ? snap.open_until : 0,
                  healthy ? NULL : error);
    if (snap.state == ET_CB_CLOSED) {
        et_log(&d->log, ET_LOG_NOTICE, p,
               "ET01012: endpoint of site %s answers again; "
               "deliveries resume", ev->site);
    }
    else if (before == ET_CB_CLOSED) {
        et_log(&d->log, ET_LOG_WARNING, p,
               "ET01010: endpoint of site %s paused for %"
               APR_TIME_T_FMT "s after %d consecutive failures "
               "(last: %s); one call will probe it", ev->site,
               apr_time_sec(snap.pause), snap.failures,
               error ? error : "error");
    }
    else {
        et_log(&d->log, ET_LOG_INFO, p,
               "ET01011: probe of site %s failed; paused for %"
               APR_TIME_T_FMT "s", ev->site,
               apr_time_sec(snap.pause));
    }
}

/* Before claiming a site's events: whether they may go (et_gate_e).
 * With d->cb_lock held. */
et_gate_e etd_gate_of(const et_circuit_t *c)
{
    return c->state == ET_CB_CLOSED ? ET_GATE_OPEN
           : (c->state == ET_CB_OPEN && apr_time_now() >= c->open_until)
             ? ET_GATE_PROBE
           : ET_GATE_PAUSED;
}

et_gate_e etd_circuit_gate(dispatcher_t *d, const char *site)
{
    et_gate_e gate;

    apr_thread_mutex_lock(d->cb_lock);
    gate = etd_gate_of(circuit_of(d, site));
    apr_thread_mutex_unlock(d->cb_lock);
    return gate;
}

/* A probe was claimed: the circuit is probing until its outcome. */
void etd_probe_started(dispatcher_t *d, apr_pool_t *p, const char *name)
{
    const et_site_t *site = d->conf->lookup(d->conf->lookup_baton, name);
    et_circuit_t *c, snap;

    apr_thread_mutex_lock(d->cb_lock);
    c = circuit_of(d, name);
    et_circuit_admit(c, &site->circuit, apr_time_now());
    snap = *c;
    apr_thread_mutex_unlock(d->cb_lock);
    circuit_store(d, p, name, &snap,
                  apr_time_now() + site->timeout + apr_time_from_sec(1), NULL);
}

/* The probe could not be started: open again, due for a probe at once. */
void etd_probe_lost(dispatcher_t *d, const char *name)
{
    et_circuit_t *c;

    apr_thread_mutex_lock(d->cb_lock);
    c = circuit_of(d, name);
    c->state = ET_CB_OPEN;
    c->open_until = apr_time_now();
    apr_thread_mutex_unlock(d->cb_lock);
}

/* A paused endpoint stays paused across a restart of the dispatcher. */
void etd_load_circuits(dispatcher_t *d, apr_pool_t *p)
{
    apr_array_header_t *rows;
    apr_time_t now = apr_time_now();
    int i;

    if (et_outbox_circuits(d->ob, p, &rows) != APR_SUCCESS) {
        return;
    }
    for (i = 0; i < rows->nelts; i++) {
        et_circuit_row_t *row = APR_ARRAY_IDX(rows, i, et_circuit_row_t *);
        et_circuit_t *c;

        if (row->state == ET_CB_CLOSED) {
            continue;
        }
        c = circuit_of(d, row->site);
        c->state = ET_CB_OPEN;        /* a probe in flight died with us */
        c->failures = row->failures;
        c->open_until = row->open_until > now ? row->open_until : now;
        c->pause = row->open_until - row->changed;
    }
}

/* The configured sites, and any other that still has pending events (a
 * site removed from the configuration keeps its events delivered). */
void etd_load_sites(dispatcher_t *d, apr_pool_t *p)
{
    apr_array_header_t *pending = NULL;
    int i, j;

    d->sites = apr_array_make(p, 8, sizeof(const char *));
    for (i = 0; d->conf->sites && i < d->conf->sites->nelts; i++) {
        APR_ARRAY_PUSH(d->sites, const char *) =
            APR_ARRAY_IDX(d->conf->sites, i, const char *);
    }
    if (et_outbox_pending_sites(d->ob, p, &pending) != APR_SUCCESS) {
        et_log(&d->log, ET_LOG_ERR, p, "ET01016: %s", et_outbox_error(d->ob));
        return;
    }
    for (i = 0; i < pending->nelts; i++) {
        const char *name = APR_ARRAY_IDX(pending, i, const char *);
        for (j = 0; j < d->sites->nelts; j++) {
            if (!strcmp(name, APR_ARRAY_IDX(d->sites, j, const char *))) {
                break;
            }
        }
        if (j == d->sites->nelts) {
            APR_ARRAY_PUSH(d->sites, const char *) = apr_pstrdup(p, name);
            et_log(&d->log, ET_LOG_WARNING, p,
                   "ET01017: site %s is no longer configured; "
                   "its pending events still go to the URLs "
                   "they were captured with", name);
        }
    }
}
