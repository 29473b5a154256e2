/* Licensed under the Apache License, Version 2.0. */
/*
 * etctl: look into mod_eventtrigger's outbox and replay dead letters.
 *
 * It works on the outbox itself (through the same lib/ code as the
 * module), so it needs no running httpd. Run as root on a sqlite3 outbox,
 * it first becomes the file's owner, so that the journal files it may
 * create stay usable by httpd's User.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <grp.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <apr_lib.h>

#include "et_outbox.h"
#include "et_trace.h"
#include "et_retry.h"
#include "et_circuit.h"

#define DEFAULT_STORE "sqlite3:/var/lib/apache2/eventtrigger/outbox.db"

static const char *state_name(int st)
{
    switch (st) {
    case ET_ST_PENDING:
        return "pending";
    case ET_ST_DELIVERED:
        return "delivered";
    case ET_ST_DEAD:
        return "dead";
    case ET_ST_FAILED:
        return "failed";
    default:
        return "?";
    }
}

static int state_parse(const char *s)
{
    int i;

    if (!strcmp(s, "all")) {
        return -1;
    }
    for (i = ET_ST_PENDING; i <= ET_ST_FAILED; i++) {
        if (!strcmp(s, state_name(i))) {
            return i;
        }
    }
    return -2;
}

static const char *when(apr_pool_t *p, apr_time_t t)
{
    apr_time_exp_t tm;

    if (!t) {
        return "-";
    }
    apr_time_exp_gmt(&tm, t);
    return apr_psprintf(p, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                        tm.tm_sec);
}

/* Printable, one line: ids and errors may hold anything. */
static const char *clean(apr_pool_t *p, const char *s)
{
    char *c, *q;

    if (!s) {
        return "-";
    }
    c = apr_pstrdup(p, s);
    for (q = c; *q; q++) {
        if (apr_iscntrl(*q)) {
            *q = ' ';
        }
    }
    return c;
}

static void print_event_line(apr_pool_t *p, const et_event_t *ev)
{
    printf("%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", ev->txn,
           state_name(ev->state), clean(p, ev->site),
           et_object_name(ev->object) ? et_object_name(ev->object) : "-",
           et_event_name(ev->event), clean(p, ev->oid), ev->attempts,
           ev->last_status, when(p, ev->created), clean(p, ev->error));
}

static void usage(void)
{
    fprintf(stderr,
        "usage: etctl [-s STORE] COMMAND\n"
        "  stats                       counts per site, endpoint health\n"
        "  list [STATE] [-n N]         newest events; STATE: pending,\n"
        "                              delivered, dead, failed or all\n"
        "  show TXN                    one event, with its body\n"
        "  replay TXN...               put dead letters back in line\n"
        "  replay --since TIME         every dead letter captured since TIME\n"
        "TIME: epoch seconds, YYYY-MM-DDTHH:MM:SSZ, or an age such as 2h.\n"
        "STORE: -s, else $EVENTTRIGGER_STORE, else " DEFAULT_STORE "\n");
}

/* Become the sqlite3 file's owner when run as root (see the top). */
static int become_owner(const char *store)
{
    struct stat st;

    if (geteuid() != 0 || strncmp(store, "sqlite3:", 8)) {
        return 0;
    }
    if (stat(store + 8, &st) < 0) {
        fprintf(stderr, "etctl: %s: no such outbox\n", store + 8);
        return -1;
    }
    /* root's supplementary groups go too, or they would stay ours */
    if (st.st_uid != 0
        && (setgroups(0, NULL) < 0 || setgid(st.st_gid) < 0
            || setuid(st.st_uid) < 0)) {
        perror("etctl: cannot become the outbox's owner");
        return -1;
    }
    return 0;
}

static int cmd_stats(et_outbox_t *ob, apr_pool_t *p)
{
    apr_array_header_t *sites, *circuits;
    apr_time_t now = apr_time_now();
    int i;

    if (et_outbox_site_counts(ob, p, &sites) != APR_SUCCESS
        || et_outbox_circuits(ob, p, &circuits) != APR_SUCCESS) {
        fprintf(stderr, "etctl: %s\n", et_outbox_error(ob));
        return 1;
    }
    printf("site\tpending\tin_flight\tretrying\tdelivered\tdead\tfailed"
           "\toldest_pending_s\n");
    for (i = 0; i < sites->nelts; i++) {
        et_site_counts_t *c = APR_ARRAY_IDX(sites, i, et_site_counts_t *);
        printf("%s\t%" APR_INT64_T_FMT "\t%" APR_INT64_T_FMT "\t%"
               APR_INT64_T_FMT "\t%" APR_INT64_T_FMT "\t%" APR_INT64_T_FMT
               "\t%" APR_INT64_T_FMT "\t%" APR_INT64_T_FMT "\n",
               clean(p, c->site), c->counts.pending, c->counts.leased,
               c->retrying, c->counts.delivered, c->counts.dead,
               c->counts.failed,
               c->counts.oldest_pending
               ? (apr_int64_t)apr_time_sec(now - c->counts.oldest_pending)
               : (apr_int64_t)0);
    }
    if (circuits->nelts) {
        printf("\nsite\tendpoint\tfailures\tpaused_until\tlast_error\n");
    }
    for (i = 0; i < circuits->nelts; i++) {
        et_circuit_row_t *c = APR_ARRAY_IDX(circuits, i, et_circuit_row_t *);
        printf("%s\t%s\t%d\t%s\t%s\n", clean(p, c->site),
               et_circuit_state_name(c->state), c->failures,
               c->open_until > now ? when(p, c->open_until) : "-",
               clean(p, c->last_error));
    }
    return 0;
}

int main(int argc, const char *const *argv)
{
    const char *store = getenv("EVENTTRIGGER_STORE");
    const char *since_arg = NULL, *err = NULL;
    apr_array_header_t *args;
    apr_pool_t *p;
    et_outbox_t *ob;
    apr_status_t rv;
    int i, limit = 50, rc = 0;
    const char *cmd;
    const char **pos;
    int npos;

    apr_app_initialize(&argc, &argv, NULL);
    atexit(apr_terminate);
    apr_pool_create(&p, NULL);
    if (!store || !*store) {
        store = DEFAULT_STORE;
    }
    /* options may come anywhere: "etctl list dead -n 5" */
    args = apr_array_make(p, argc, sizeof(const char *));
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];

        if ((!strcmp(a, "-s") || !strcmp(a, "--store")) && i + 1 < argc) {
            store = argv[++i];
        }
        else if ((!strcmp(a, "-n") || !strcmp(a, "--limit")) && i + 1 < argc) {
            limit = atoi(argv[++i]);
            if (limit < 1) {
                usage();
                return 2;
            }
        }
        else if (!strcmp(a, "--since") && i + 1 < argc) {
            since_arg = argv[++i];
        }
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return 0;
        }
        else if (a[0] == '-' && a[1]) {
            usage();
            return 2;
        }
        else {
            APR_ARRAY_PUSH(args, const char *) = a;
        }
    }
    if (args->nelts < 1) {
        usage();
        return 2;
    }
    pos = (const char **)args->elts;
    npos = args->nelts;
    cmd = pos[0];
    i = 1;
    if (become_owner(store) < 0) {
        return 1;
    }
    if (et_outbox_open(&ob, p, store, 0, &err) != APR_SUCCESS) {
        fprintf(stderr, "etctl: %s\n", err ? err : "cannot open the outbox");
        return 1;
    }

    if (!strcmp(cmd, "stats")) {
        rc = cmd_stats(ob, p);
    }
    else if (!strcmp(cmd, "list")) {
        apr_array_header_t *evs;
        int st = i < npos ? state_parse(pos[i]) : -1;
        int i;

        if (st < -1) {
            usage();
            return 2;
        }
        if (et_outbox_list(ob, p, st, limit, &evs) != APR_SUCCESS) {
            fprintf(stderr, "etctl: %s\n", et_outbox_error(ob));
            return 1;
        }
        printf("txn\tstate\tsite\tobject\tevent\tid\tattempts\tlast_status"
               "\tcreated\terror\n");
        for (i = 0; i < evs->nelts; i++) {
            print_event_line(p, APR_ARRAY_IDX(evs, i, et_event_t *));
        }
    }
    else if (!strcmp(cmd, "show") && i < npos) {
        et_event_t *ev;

        rv = et_outbox_show(ob, p, pos[i], &ev);
        if (rv == APR_NOTFOUND) {
            fprintf(stderr, "etctl: no event with txn %s\n",
                    clean(p, pos[i]));
            return 1;
        }
        if (rv != APR_SUCCESS) {
            fprintf(stderr, "etctl: %s\n", et_outbox_error(ob));
            return 1;
        }
        printf("txn:          %s\nstate:        %s\nsite:         %s\n"
               "call:         %s %s\nattempts:     %d\nlast status:  %d\n"
               "created:      %s\nnext attempt: %s\ndone:         %s\n"
               "error:        %s\ntrace:        %s\n",
               ev->txn, state_name(ev->state), clean(p, ev->site),
               et_event_method(ev->event), clean(p, ev->url), ev->attempts,
               ev->last_status, when(p, ev->created),
               ev->state == ET_ST_PENDING ? when(p, ev->due) : "-",
               when(p, ev->done_at), clean(p, ev->error),
               clean(p, et_trace_id(p, ev->traceparent, ev->txn)));
        if (ev->tracestate) {
            printf("tracestate:   %s\n", clean(p, ev->tracestate));
        }
        if (ev->headers) {
            char *lines = apr_pstrdup(p, ev->headers), *last, *line;

            /* the EventTriggerHeader expr= values it was stored with */
            for (line = apr_strtok(lines, "\n", &last); line;
                 line = apr_strtok(NULL, "\n", &last)) {
                printf("header:       %s\n", clean(p, line));
            }
        }
        printf("content-type: %s\n\n%s\n",
               ev->content_type ? ev->content_type : "-",
               ev->body ? ev->body : "");
    }
    else if (!strcmp(cmd, "replay")) {
        int n = 0, total = 0;

        if (since_arg) {
            apr_time_t since;

            if (et_time_parse(since_arg, apr_time_now(), &since) != APR_SUCCESS
                || i < npos) {
                usage();
                return 2;
            }
            if (et_outbox_replay(ob, NULL, since, &total) != APR_SUCCESS) {
                fprintf(stderr, "etctl: %s\n", et_outbox_error(ob));
                return 1;
            }
        }
        else if (i >= npos) {
            usage();
            return 2;
        }
        for (; i < npos; i++) {
            if (et_outbox_replay(ob, pos[i], 0, &n) != APR_SUCCESS) {
                fprintf(stderr, "etctl: %s\n", et_outbox_error(ob));
                return 1;
            }
            if (!n) {
                fprintf(stderr, "etctl: %s is not a dead letter\n",
                        clean(p, pos[i]));
                rc = 1;
            }
            total += n;
        }
        printf("%d event%s back in line\n", total, total == 1 ? "" : "s");
    }
    else {
        usage();
        rc = 2;
    }
    et_outbox_close(ob);
    return rc;
}
