/* Licensed under the Apache License, Version 2.0. */
/*
 * The dispatcher's per-site state: its endpoint's circuit (et_circuit.h:
 * paused after failures, probed, resumed), kept in memory for the claims
 * and written to the outbox for the status page, the next dispatcher and
 * the other machines that share the outbox, and whether its last claim
 * took all that was due.
 *
 * One pause for all machines: each dispatcher reads et_circuit (a few
 * rows) at most once per ET_CIRCUITS_READ and adopts a pause or a
 * resumption that another one recorded (etd_circuits_sync); when a pause
 * is over, the probe is taken through the outbox (et_outbox_circuit_take:
 * one dispatcher of all wins it) and its outcome, written like any other
 * change, is adopted by the others.
 *
 * Thread safety: called on the claiming thread, the calling thread (an
 * attempt's outcome, a probe given back) and the intake's thread (the
 * gate of a fresh event). The state and its hash are guarded by
 * d->cb_lock, which every function here takes itself unless it says "with
 * d->cb_lock held"; no other lock is taken under it. circuit_store and
 * etd_circuits_sync take the outbox's locks (etd_ob_enter, or d->ob_lock
 * alone to read) with d->cb_lock released, and take d->cb_lock under
 * them to mark the row they wrote or read (site_state_t's seen_*), so that
 * a read and a write of the same row are seen in the order they were
 * made. d->circuits_read is the claiming thread's.
 * etd_load_circuits and etd_load_sites run in setup, before any thread.
 */

#include <apr_strings.h>

#include "et_dispatch_int.h"
#include "et_outbox.h"

/* How stale a dispatcher's copy of the other machines' pauses may get:
 * one read of et_circuit per this, and while a site is paused the claim
 * loop wakes at least this often to read it (etd_pause_ends). */
#define ET_CIRCUITS_READ apr_time_from_sec(1)

/* The probe's lease: its call's timeout and a second; if the dispatcher
 * that holds it dies, another takes the probe after that. */
static apr_time_t probe_lease(dispatcher_t *d, const char *name)
{
    const et_site_t *site = d->conf->lookup(d->conf->lookup_baton, name);

    return (site ? site->timeout : 0) + apr_time_from_sec(1);
}

/* Remember @a row as the site's row this dispatcher knows; with
 * d->cb_lock held. */
static void seen_row(site_state_t *st, int state, apr_time_t open_until,
                     apr_time_t changed)
{
    st->seen = 1;
    st->seen_state = state;
    st->seen_open_until = open_until;
    st->seen_changed = changed;
}

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
 * is paused): its due events wait for that, not for a due time. While
 * one is paused or probing, no later than the next read of the other
 * machines' circuits (one of them may end the pause). */
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
        if (st->cb.state != ET_CB_CLOSED
            && d->circuits_read + ET_CIRCUITS_READ < first) {
            first = d->circuits_read + ET_CIRCUITS_READ;
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
    else {
        /* under the connection's lock, as etd_circuits_sync's read: that
         * read sees this row and this mark together, never the row before
         * with the mark after (which would look like another's write) */
        apr_thread_mutex_lock(d->cb_lock);
        seen_row(etd_site_state(d, site), row.state, row.open_until,
                 row.changed);
        apr_thread_mutex_unlock(d->cb_lock);
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

/* Before claiming a site's events: whether they may go (et_gate_e). A
 * pause that is over waits for its probe to be taken (etd_circuits_sync)
 * by this dispatcher: until then, and while another holds it, it stays
 * paused. With d->cb_lock held. */
et_gate_e etd_gate_of(const et_circuit_t *c)
{
    apr_time_t now = apr_time_now();

    return c->state == ET_CB_CLOSED ? ET_GATE_OPEN
           : (c->state == ET_CB_OPEN && now >= c->open_until
              && c->probe_until > now)
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

/* A probe was claimed: the circuit is probing until its outcome (for
 * the other machines: until the probe's lease ends). */
void etd_probe_started(dispatcher_t *d, apr_pool_t *p, const char *name)
{
    const et_site_t *site = d->conf->lookup(d->conf->lookup_baton, name);
    et_circuit_t *c, snap;

    apr_thread_mutex_lock(d->cb_lock);
    c = circuit_of(d, name);
    et_circuit_admit(c, &site->circuit, apr_time_now());
    snap = *c;
    apr_thread_mutex_unlock(d->cb_lock);
    circuit_store(d, p, name, &snap, apr_time_now() + probe_lease(d, name),
                  NULL);
}

/* The probe could not be started: open again, due for a probe at once,
 * by any dispatcher (the probe's lease is given up in the outbox too). */
void etd_probe_lost(dispatcher_t *d, const char *name)
{
    et_circuit_t *c, snap;
    apr_time_t now = apr_time_now();
    apr_pool_t *p;

    apr_thread_mutex_lock(d->cb_lock);
    c = circuit_of(d, name);
    c->state = ET_CB_OPEN;
    c->open_until = now;
    c->probe_until = 0;
    snap = *c;
    apr_thread_mutex_unlock(d->cb_lock);
    /* the calling thread's (any thread's): a pool of its own, from the
     * one whose allocator is locked */
    apr_pool_create(&p, d->jobs_pool);
    circuit_store(d, p, name, &snap, now, NULL);
    apr_pool_destroy(p);
}

/*
 * Adopt @a row, another dispatcher's record of the site's endpoint, if it
 * is not the one this dispatcher last read or wrote. With d->cb_lock
 * held. Returns 1 if the endpoint is now paused for us (it was not), 2 if
 * it resumed, 0 otherwise.
 */
static int adopt_row(dispatcher_t *d, const et_circuit_row_t *row)
{
    site_state_t *st = etd_site_state(d, row->site);
    et_circuit_t *c = &st->cb;
    et_cb_state_e was = c->state;

    if (st->seen && st->seen_state == row->state
        && st->seen_open_until == row->open_until
        && st->seen_changed == row->changed) {
        return 0;                     /* ours, or adopted already */
    }
    seen_row(st, row->state, row->open_until, row->changed);
    if (row->state == ET_CB_CLOSED) {
        if (was == ET_CB_CLOSED) {
            return 0;                 /* our own failures still count */
        }
        c->state = ET_CB_CLOSED;
        c->failures = 0;
        c->pause = 0;
        c->open_until = 0;
        c->probe_until = 0;
        return 2;
    }
    if (was == ET_CB_PROBING) {
        return 0;                     /* our probe decides */
    }
    c->state = ET_CB_OPEN;
    c->open_until = row->open_until;
    c->probe_until = 0;               /* if we held it, our lease ran out */
    if (row->state == ET_CB_OPEN) {
        /* its pause: ours doubles from it if a probe of ours fails */
        c->failures = row->failures;
        if (row->open_until > row->changed) {
            c->pause = row->open_until - row->changed;
        }
    }
    /* probing: paused for us until its probe's lease ends */
    return was == ET_CB_CLOSED ? 1 : 0;
}

/* Read et_circuit and adopt what other dispatchers recorded. Claiming
 * thread; takes d->ob_lock (a read needs no writer's lock), then
 * d->cb_lock under it. */
static void read_circuits(dispatcher_t *d, apr_pool_t *p, apr_time_t now)
{
    apr_array_header_t *rows = NULL;
    apr_status_t rv;
    int *what = NULL;
    int i;

    d->circuits_read = now;
    apr_thread_mutex_lock(d->ob_lock);
    rv = et_outbox_circuits(d->ob, p, &rows);
    if (rv == APR_SUCCESS && rows->nelts) {
        what = apr_pcalloc(p, rows->nelts * sizeof(int));
        apr_thread_mutex_lock(d->cb_lock);
        for (i = 0; i < rows->nelts; i++) {
            what[i] = adopt_row(d, APR_ARRAY_IDX(rows, i,
                                                 et_circuit_row_t *));
        }
        apr_thread_mutex_unlock(d->cb_lock);
    }
    apr_thread_mutex_unlock(d->ob_lock);
    if (rv != APR_SUCCESS) {
        et_log(&d->log, ET_LOG_DEBUG, p,
               "ET01055: cannot read the endpoints' health that other "
               "dispatchers recorded: %s", et_outbox_error(d->ob));
        return;
    }
    for (i = 0; i < rows->nelts; i++) {
        const et_circuit_row_t *row = APR_ARRAY_IDX(rows, i,
                                                    et_circuit_row_t *);

        if (what[i] == 1) {
            et_log(&d->log, ET_LOG_WARNING, p,
                   "ET01056: endpoint of site %s was paused by another "
                   "dispatcher of the outbox for %" APR_TIME_T_FMT
                   "ms more (last: %s); no calls to it from here meanwhile",
                   row->site, apr_time_as_msec(row->open_until > now
                                               ? row->open_until - now : 0),
                   row->last_error ? row->last_error : "error");
        }
        else if (what[i] == 2) {
            et_log(&d->log, ET_LOG_NOTICE, p,
                   "ET01057: endpoint of site %s answers again (seen by "
                   "another dispatcher of the outbox); deliveries resume",
                   row->site);
        }
    }
}

/*
 * Before a round (claiming thread, outbox not entered): read the other
 * dispatchers' pauses if our copy is older than ET_CIRCUITS_READ, and,
 * with @a take, take the probe of every pause that is over. The take is
 * its own statement, outside the round's transaction: it holds no row
 * lock while the round claims, so it can neither wait for nor deadlock
 * with another machine's round. Lost to another dispatcher, the pause is
 * read again: paused for us until that probe's lease ends. A probe taken
 * but not claimed (nothing due) stays ours until its lease ends.
 */
void etd_circuits_sync(dispatcher_t *d, apr_pool_t *p, int take)
{
    apr_time_t now = apr_time_now();
    apr_array_header_t *want;
    apr_hash_index_t *hi;
    int i;

    if (now - d->circuits_read >= ET_CIRCUITS_READ) {
        read_circuits(d, p, now);
    }
    if (!take) {
        return;
    }
    want = apr_array_make(p, 2, sizeof(const char *));
    apr_thread_mutex_lock(d->cb_lock);
    for (hi = apr_hash_first(p, d->circuits); hi; hi = apr_hash_next(hi)) {
        const void *key;
        site_state_t *st;

        apr_hash_this(hi, &key, NULL, (void **)&st);
        if (st->cb.state == ET_CB_OPEN && now >= st->cb.open_until
            && st->cb.probe_until <= now) {
            APR_ARRAY_PUSH(want, const char *) = key;
        }
    }
    apr_thread_mutex_unlock(d->cb_lock);
    for (i = 0; i < want->nelts; i++) {
        const char *name = APR_ARRAY_IDX(want, i, const char *);
        apr_time_t until = now + probe_lease(d, name);
        apr_status_t rv;
        int taken = 0;
        et_circuit_t *c;

        etd_ob_enter(d);
        rv = et_outbox_circuit_take(d->ob, name, now, until, &taken);
        if (taken) {
            /* under the connection's lock: see circuit_store */
            apr_thread_mutex_lock(d->cb_lock);
            seen_row(etd_site_state(d, name), ET_CB_PROBING, until, now);
            apr_thread_mutex_unlock(d->cb_lock);
        }
        etd_ob_leave(d);
        if (rv != APR_SUCCESS) {
            et_log(&d->log, ET_LOG_WARNING, p,
                   "ET01058: cannot take the probe of site %s through "
                   "the outbox: %s; probing it from here", name,
                   et_outbox_error(d->ob));
        }
        else if (!taken) {
            /* another dispatcher's, or no row (never recorded): see */
            read_circuits(d, p, now);
        }
        apr_thread_mutex_lock(d->cb_lock);
        c = circuit_of(d, name);
        if (c->state == ET_CB_OPEN && now >= c->open_until
            && c->probe_until <= now) {
            /* won, or the outbox has nothing newer than what we know
             * (its row is missing or could not be written): ours */
            c->probe_until = until;
        }
        apr_thread_mutex_unlock(d->cb_lock);
    }
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
    d->circuits_read = now;
    for (i = 0; i < rows->nelts; i++) {
        et_circuit_row_t *row = APR_ARRAY_IDX(rows, i, et_circuit_row_t *);
        et_circuit_t *c;

        seen_row(etd_site_state(d, row->site), row->state, row->open_until,
                 row->changed);
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
