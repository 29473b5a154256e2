/* Licensed under the Apache License, Version 2.0. */
/*
 * The dispatcher's claim loop. The claiming thread (the process's main
 * thread, et_dispatch_run) claims due events from the outbox (with a
 * lease) and queues them for the calling thread (et_dispatch_call.c),
 * which makes the calls and hands each finished call back; the claiming
 * thread writes the outcomes. The intake's thread may lease fresh events
 * to us as it stores them (the lessee, below), so that they need no
 * claim. The other parts: per-site state and circuits
 * (et_dispatch_site.c), the outcome policy (et_judge.c), the checkpointer
 * thread (et_checkpoint.c); et_dispatch_int.h says what the threads share
 * and which lock guards what.
 *
 * Thread safety: everything here runs on the claiming thread, except
 * etd_ob_enter/etd_ob_leave (any thread: they take d->ob_lock, then
 * conf->lock), etd_store_alone (the calling thread, under those) and
 * the lessee (the intake's thread: d->cb_lock through
 * et_dispatch_site.c, atomics for d->inflight, d->q_lock to queue jobs).
 * A round holds the outbox's locks across its transaction; d->done_lock
 * is taken alone.
 */

#include <apr_atomic.h>
#include <apr_poll.h>
#include <apr_strings.h>

#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "et_dispatch_int.h"
#include "et_guard.h"
#include "et_outbox.h"

/* Retention runs this often, deleting at most a batch per statement so
 * that writers are not held up. */
#define ET_PRUNE_EVERY apr_time_from_sec(60)
#define ET_PRUNE_BATCH 1000

/* Rounds (outcomes stored and claims made, one transaction and so one
 * fsync) are at least this far apart unless a batch is full, so that a
 * stream of events does not cost a commit each: the writer's lock stays
 * free for the request threads that capture. A lone event is not delayed
 * (the last round is long past). Fresh events reach the calls without a
 * round (lessee_settle), so the gap delays only their outcomes: 4 ms
 * rather than 1 ms bought figure 1 about 10% (docs/performance.md). */
#define ET_ROUND_GAP apr_time_from_msec(4)

/* While the outbox's reserve is given up, the dispatcher checks the room
 * itself this often (room_to_write). */
#define ET_SPACE_RECHECK apr_time_from_sec(1)

/* The dispatcher's SQLite page cache, KiB (within figure 4's memory
 * budget: at most 20 MB more with a million events pending). */
#define ET_DISPATCH_CACHE_KIB 8192

/* Claimed ahead: besides one per worker, up to this many events per
 * worker are leased and queued for the calling thread, so that a round claims
 * a batch, not the one event a worker just freed room for. How many is
 * set by how long calls take (set_cap): the queue is meant to drain in
 * about ET_QUEUE_WAIT, so that slow calls (of one site) do not hold the
 * events queued behind them (of any site) for long, nor near their lease. */
#define ET_CLAIM_AHEAD 7
#define ET_QUEUE_WAIT apr_time_from_msec(50)

/* Chained delivery: with each claimed head that has events waiting behind
 * it (the claim says which), up to this many of them are leased
 * (et_outbox_claim_next), as many in all as the room the claim left, so
 * that an object's backlog drains at the receiver's pace (a call after
 * each call, on the worker the last one freed) rather than one event per
 * round. Heads of distinct objects cost no extra statement. */
#define ET_CHAIN_MAX 64

/* The connection is the dispatcher's (ob_lock); writing also needs the
 * outbox's cross-process lock, held by one writer at a time. */
void etd_ob_enter(dispatcher_t *d)
{
    apr_thread_mutex_lock(d->ob_lock);
    if (d->conf->lock) {
        apr_global_mutex_lock(d->conf->lock);
    }
}

void etd_ob_leave(dispatcher_t *d)
{
    if (d->conf->lock) {
        apr_global_mutex_unlock(d->conf->lock);
    }
    apr_thread_mutex_unlock(d->ob_lock);
}

/*
 * How many events may be leased at once: one per worker plus what the
 * workers get through in about ET_QUEUE_WAIT at the recent calls' pace,
 * at most ET_CLAIM_AHEAD more per worker. A full round is half of it.
 * Claiming thread only; workers read cap and batch (atomics).
 */
static void set_cap(dispatcher_t *d)
{
    apr_uint32_t w = (apr_uint32_t)d->conf->workers;
    apr_uint32_t mean = apr_atomic_read32(&d->call_us);
    apr_uint32_t ahead = mean ? (apr_uint32_t)(ET_QUEUE_WAIT / mean)
                              : ET_CLAIM_AHEAD;

    if (ahead > ET_CLAIM_AHEAD) {
        ahead = ET_CLAIM_AHEAD;
    }
    apr_atomic_set32(&d->cap, w * (1 + ahead));
    apr_atomic_set32(&d->batch, (w * (1 + ahead) + 1) / 2);
}

static job_t *make_job(dispatcher_t *d, const et_event_t *src,
                       apr_time_t lease_until);

/* One site's claim in a round; its calls start once the round is
 * committed (a call must not run on a lease that is rolled back). */
typedef struct claim_t {
    const char *site;
    int probe;                        /* the one call that probes a pause */
    apr_array_header_t *evs;
    apr_array_header_t **next;        /* per event of evs: its followers
                                       * (chained delivery), or NULL */
} claim_t;

/*
 * Lease the followers of @a c's heads (chained delivery) with up to
 * @a budget events in all, in the round's transaction, of every head
 * that has some. 0, or -1 when a claim failed (the transaction is
 * spoiled).
 */
static int claim_chains(dispatcher_t *d, apr_pool_t *p, claim_t *c,
                        int budget)
{
    int i, n = 0, share;

    for (i = 0; i < c->evs->nelts; i++) {
        n += APR_ARRAY_IDX(c->evs, i, et_event_t *)->followed > 0;
    }
    if (!n) {
        return 0;
    }
    /* shared out in claim order (soonest due first) */
    share = budget / n;
    share = share < 1 ? 1 : share > ET_CHAIN_MAX ? ET_CHAIN_MAX : share;
    c->next = apr_pcalloc(p, c->evs->nelts * sizeof(*c->next));
    for (i = 0; i < c->evs->nelts && budget > 0; i++) {
        et_event_t *head = APR_ARRAY_IDX(c->evs, i, et_event_t *);

        if (head->followed <= 0) {
            continue;
        }
        if (et_outbox_claim_next(d->ob, p, head, d->owner,
                                 budget < share ? budget : share,
                                 &c->next[i]) != APR_SUCCESS) {
            return -1;
        }
        budget -= c->next[i]->nelts;
    }
    return 0;
}

/*
 * Claim for every site with room left, inside the round's transaction,
 * starting at a different site each time so that a busy site does not
 * starve the others; paused sites are skipped without touching their
 * events (no attempt is used up). 0, or -1 when a claim failed.
 */
static int claim_sites(dispatcher_t *d, apr_pool_t *p, int room,
                       apr_array_header_t *got)
{
    int k, n = d->sites->nelts, rc = 0;

    for (k = 0; k < n && room > 0; k++) {
        const char *site = APR_ARRAY_IDX(d->sites, (d->next_site + k) % n,
                                         const char *);
        et_gate_e gate = etd_circuit_gate(d, site);
        apr_array_header_t *evs = NULL;
        claim_t *c;

        if (gate == ET_GATE_PAUSED) {
            /* paused: what comes meanwhile waits behind what is there */
            apr_thread_mutex_lock(d->cb_lock);
            etd_site_state(d, site)->caught_up = 0;
            apr_thread_mutex_unlock(d->cb_lock);
            continue;
        }
        if (et_outbox_claim(d->ob, p, site, d->owner, d->conf->lease,
                            gate == ET_GATE_PROBE ? 1 : room, &evs)
            != APR_SUCCESS) {
            rc = -1;                  /* the transaction is spoiled */
            break;
        }
        /* fewer than asked: nothing more of it is due; until a claim
         * fills up again, its fresh events skip the claim */
        apr_thread_mutex_lock(d->cb_lock);
        etd_site_state(d, site)->caught_up = gate == ET_GATE_OPEN
                                            && evs->nelts < room;
        apr_thread_mutex_unlock(d->cb_lock);
        if (!evs->nelts) {
            continue;
        }
        c = apr_array_push(got);
        c->site = site;
        c->probe = gate == ET_GATE_PROBE;
        c->evs = evs;
        c->next = NULL;
        /* Fewer objects due than the room (one busy object, a few): the
         * room they left goes to the next events of those with a line
         * behind them, to follow each call at once. A claim that filled
         * its room chains nothing: the workers are busy with distinct
         * objects, and each object's next event, its head once the
         * outcome is committed, comes with the next round's claim.
         * Chaining them too made the rounds small (each chain asks for
         * its round at once) and their commits many: each object's
         * events stored in a row drained at 0.56 of distinct objects,
         * 0.68 without (figure 14c, grouped; bursts of one object were
         * chained then, to no gain). */
        if (gate == ET_GATE_OPEN && evs->nelts < room
            && claim_chains(d, p, c, room - evs->nelts) != 0) {
            rc = -1;
            break;
        }
        room -= evs->nelts;
    }
    if (rc) {
        et_log(&d->log, ET_LOG_ERR, p,
               "ET01006: cannot claim events of site %s: %s",
               APR_ARRAY_IDX(d->sites, (d->next_site + k) % n, const char *),
               et_outbox_error(d->ob));
    }
    d->next_site = n ? (d->next_site + 1) % n : 0;
    return rc;
}

/* Append the jobs @a head .. @a tail to the calling thread's queue. */
static void enqueue(dispatcher_t *d, job_t *head, job_t *tail)
{
    apr_thread_mutex_lock(d->q_lock);
    if (d->queue_tail) {
        d->queue_tail->next = head;
    }
    else {
        d->queue = head;
    }
    d->queue_tail = tail;
    apr_thread_mutex_unlock(d->q_lock);
    et_http_wake(d->http);
}

/* Queue the committed claims for the calling thread, in claim order;
 * returns how many. */
static int start_claims(dispatcher_t *d, apr_pool_t *p,
                        apr_array_header_t *got, apr_time_t lease_until)
{
    job_t *head = NULL, *tail = NULL;
    int k, i, n = 0;

    for (k = 0; k < got->nelts; k++) {
        claim_t *c = &APR_ARRAY_IDX(got, k, claim_t);

        if (c->probe) {
            etd_probe_started(d, p, c->site);
        }
        for (i = 0; i < c->evs->nelts; i++) {
            job_t *job = make_job(d, APR_ARRAY_IDX(c->evs, i, et_event_t *),
                                  lease_until);

            if (c->next && c->next[i]) {
                job_t **link = &job->chain;
                int j;

                /* followers wait on their head's job, outside d->inflight
                 * until the calling thread starts them */
                for (j = 0; j < c->next[i]->nelts; j++) {
                    *link = make_job(d, APR_ARRAY_IDX(c->next[i], j,
                                                      et_event_t *),
                                     lease_until);
                    link = &(*link)->chain;
                }
            }
            job->probe = c->probe;
            if (tail) {
                tail->next = job;
            }
            else {
                head = job;
            }
            tail = job;
            n++;
        }
    }
    if (!n) {
        return 0;
    }
    apr_atomic_add32(&d->inflight, (apr_uint32_t)n);
    enqueue(d, head, tail);
    return n;
}

/*
 * The intake's thread, before it stores @a ev: lease it to us if its site
 * is healthy and caught up (so it does not overtake events that wait for
 * a claim) and a place in flight is free. Its object's order is checked
 * by the insert itself (et_outbox_insert).
 */
static int lessee_reserve(void *baton, et_event_t *ev)
{
    dispatcher_t *d = baton;
    apr_uint32_t cap = apr_atomic_read32(&d->cap), n;
    site_state_t *st;
    et_gate_e gate;
    int caught_up;

    if (ev->state != ET_ST_PENDING || ev->error || !ev->site) {
        return ET_LEASE_NONE;
    }
    apr_thread_mutex_lock(d->cb_lock);
    st = etd_site_state(d, ev->site);
    gate = etd_gate_of(&st->cb);
    caught_up = st->caught_up;
    apr_thread_mutex_unlock(d->cb_lock);
    if (gate == ET_GATE_PAUSED) {
        return ET_LEASE_PAUSED;       /* the claim loop waits too */
    }
    if (gate != ET_GATE_OPEN || !caught_up) {
        return ET_LEASE_NONE;
    }
    do {
        n = apr_atomic_read32(&d->inflight);
        if (n >= cap) {
            return ET_LEASE_NONE;
        }
    } while (apr_atomic_cas32(&d->inflight, n + 1, n) != n);
    ev->lease_owner = d->owner;
    ev->lease_until = apr_time_now() + d->conf->lease;
    return ET_LEASE_TAKEN;
}

/* The intake's thread, after its commit: the events stored with our lease
 * go to the calling thread, the others give their place back. */
static void lessee_settle(void *baton, et_event_t **evs,
                          const apr_status_t *stored, int n)
{
    dispatcher_t *d = baton;
    job_t *head = NULL, *tail = NULL;
    int i;

    for (i = 0; i < n; i++) {
        job_t *job;

        if (stored[i] != APR_SUCCESS || !evs[i]->lease_owner) {
            apr_atomic_dec32(&d->inflight);
            continue;
        }
        job = make_job(d, evs[i], evs[i]->lease_until);
        if (tail) {
            tail->next = job;
        }
        else {
            head = job;
        }
        tail = job;
    }
    /* an event stored plainly instead is the claim loop's: the intake
     * wakes it */
    if (head) {
        enqueue(d, head, tail);
    }
}

/*
 * Write the outcomes of @a jobs. In the round's transaction (@a each 0)
 * it stops at the first failure, which spoils the transaction; otherwise
 * each is its own commit and a failure is logged and skipped.
 * 0, or -1 when a statement failed.
 */
static int store_outcomes(dispatcher_t *d, apr_pool_t *p, job_t *jobs,
                          int each)
{
    apr_array_header_t *fin = apr_array_make(p, 16, sizeof(et_finish_t));
    apr_array_header_t *fjobs = apr_array_make(p, 16, sizeof(job_t *));
    job_t *job;
    int rc = 0, i;

    for (job = jobs; job; job = job->next) {
        apr_time_t due = job->untried ? apr_time_now()
                         : job->out.state == ET_ST_PENDING ? job->out.due
                         : d->soonest;

        if (due < d->soonest) {
            d->soonest = due;
        }
        if (!job->untried && !each) {
            /* the round's finishes go together (one statement on
             * PostgreSQL), below */
            et_finish_t *f = apr_array_push(fin);

            f->ev = job->ev;
            f->out = job->out;
            f->rv = APR_SUCCESS;
            APR_ARRAY_PUSH(fjobs, job_t *) = job;
            continue;
        }
        job->stored = job->untried
                      ? et_outbox_unclaim(d->ob, job->ev, d->owner)
                      : et_outbox_finish(d->ob, job->ev, d->owner, &job->out);
        if (job->stored == APR_SUCCESS || job->stored == APR_EBUSY) {
            continue;
        }
        rc = -1;
        if (!each) {
            return rc;
        }
        et_log(&d->log, ET_LOG_ERR, p, "ET01003: cannot record the outcome of "
               "txn=%s: %s; it will be made again when its "
               "lease expires", job->ev->txn,
               et_outbox_error(d->ob));
    }
    if (fin->nelts) {
        apr_status_t rv = et_outbox_finish_batch(d->ob, d->owner,
                                                 (et_finish_t *)fin->elts,
                                                 fin->nelts);

        for (i = 0; i < fin->nelts; i++) {
            APR_ARRAY_IDX(fjobs, i, job_t *)->stored
                = rv != APR_SUCCESS ? rv
                : APR_ARRAY_IDX(fin, i, et_finish_t).rv;
        }
        if (rv != APR_SUCCESS) {
            rc = -1;
        }
    }
    return rc;
}

/*
 * PostgreSQL: the objects whose head a round finishes (delivered, dead)
 * are locked first, as the writers that store events lock theirs, so
 * that the head passes on (et_outbox_finish) to every event stored
 * meanwhile, machines included. 0, or -1 (the transaction is spoiled).
 */
static int lock_finishing(dispatcher_t *d, apr_pool_t *p, job_t *jobs)
{
    apr_array_header_t *evs = apr_array_make(p, 16, sizeof(et_event_t *));
    job_t *job;

    for (job = jobs; job; job = job->next) {
        if (!job->untried && job->out.state != ET_ST_PENDING) {
            APR_ARRAY_PUSH(evs, et_event_t *) = job->ev;
        }
    }
    if (et_outbox_lock_objects(d->ob, p, (et_event_t *const *)evs->elts,
                               evs->nelts) != APR_SUCCESS) {
        return -1;
    }
    return 0;
}

/*
 * The outcome of @a job (delivered or dead) alone, in a transaction of
 * its own, as a round stores it but without the round's claims: the
 * calling thread's chained delivery (et_dispatch_call.c, follow_here).
 * Sets job->stored; APR_SUCCESS once committed. Any thread.
 */
apr_status_t etd_store_alone(dispatcher_t *d, job_t *job)
{
    apr_pool_t *p = job->pool;
    apr_dbd_transaction_t *trans = NULL;
    apr_status_t rv;

    etd_ob_enter(d);
    if (!etd_may_write(d)) {
        /* the reserve given up meanwhile (under this lock): the round,
         * held back, keeps the outcome */
        etd_ob_leave(d);
        return job->stored = APR_EAGAIN;
    }
    rv = et_outbox_begin(d->ob, p, &trans);
    if (rv == APR_SUCCESS && lock_finishing(d, p, job) != 0) {
        rv = APR_EGENERAL;
    }
    if (rv == APR_SUCCESS) {
        rv = et_outbox_finish(d->ob, job->ev, d->owner, &job->out);
    }
    /* apr_dbd rolls back a transaction in which a statement failed */
    if (trans && et_outbox_end(d->ob, p, trans) != APR_SUCCESS
        && rv == APR_SUCCESS) {
        rv = APR_EGENERAL;
    }
    etd_ob_leave(d);
    return job->stored = rv;
}

/* @a jobs back in d->done, their outcomes not written (the reserve was
 * given up: see room_to_write). */
static void keep_done(dispatcher_t *d, job_t *jobs)
{
    job_t *last;
    int n = 1;

    if (!jobs) {
        return;
    }
    for (last = jobs; last->next; last = last->next) {
        n++;
    }
    apr_thread_mutex_lock(d->done_lock);
    last->next = d->done;
    d->done = jobs;
    d->ndone += n;
    apr_thread_mutex_unlock(d->done_lock);
}

/*
 * After a round's commit: the next call of @a job's object, leased with
 * it (chained delivery), goes to the calling thread now that @a job's
 * outcome is stored; if it was not (the lease expired, a failed write),
 * the followers go back untried with the next round. At stop they are
 * dropped: the stop releases their leases.
 */
static void follow_on(dispatcher_t *d, job_t *job)
{
    job_t *next = job->chain, *f;

    job->chain = NULL;
    apr_atomic_dec32(&d->chains);
    if (*d->conf->stop) {
        while ((f = next) != NULL) {
            next = f->chain;
            apr_pool_destroy(f->pool);
        }
        return;
    }
    if (job->stored == APR_SUCCESS) {
        next->chained = 1;
        apr_atomic_inc32(&d->inflight);
        enqueue(d, next, next);
        return;
    }
    apr_atomic_inc32(&d->inflight);   /* as etd_give_back expects */
    etd_give_back(d, next);
}

/*
 * A round, on the claiming thread only: the outcomes of the calls made
 * since the last round and the next claims (up to @a room events), in one
 * transaction: one commit, one fsync, for many calls. If any statement
 * fails the round is rolled back; the outcomes are then written one by
 * one and nothing is claimed until the next round. Returns how many calls
 * were started.
 */
static int do_round(dispatcher_t *d, apr_pool_t *p, int room)
{
    apr_array_header_t *got = apr_array_make(p, 4, sizeof(claim_t));
    apr_dbd_transaction_t *trans = NULL;
    apr_time_t lease_until = apr_time_now() + d->conf->lease;
    job_t *jobs, *job, *next;
    int ok;

    apr_thread_mutex_lock(d->done_lock);
    jobs = d->done;
    d->done = NULL;
    d->ndone = 0;
    apr_thread_mutex_unlock(d->done_lock);
    if (!jobs && room <= 0) {
        return 0;
    }
    /* the other machines' pauses, and the probes of pauses that are over
     * (their own statements, outside the round's transaction) */
    etd_circuits_sync(d, p, room > 0);

    etd_ob_enter(d);
    /* Checked again under the writers' lock, which a store holds while it
     * gives the reserve up: the check before the round could be just
     * before that. Held back, the outcomes wait (room_to_write). */
    if (!etd_may_write(d)) {
        etd_ob_leave(d);
        keep_done(d, jobs);
        return 0;
    }
    ok = et_outbox_begin(d->ob, p, &trans) == APR_SUCCESS
         && lock_finishing(d, p, jobs) == 0
         && store_outcomes(d, p, jobs, 0) == 0
         && (room <= 0 || claim_sites(d, p, room, got) == 0);
    /* apr_dbd rolls back a transaction in which a statement failed */
    if (trans && et_outbox_end(d->ob, p, trans) != APR_SUCCESS) {
        ok = 0;
    }
    if (!ok) {
        et_log(&d->log, ET_LOG_ERR, p,
               "ET01018: cannot commit outcomes and claims: "
               "%s; writing the outcomes one by one",
               et_outbox_error(d->ob));
        apr_array_clear(got);
        store_outcomes(d, p, jobs, 1);
        /* a connection the database server ended (PostgreSQL restarted)
         * stays dead: the dispatcher must start again on new ones */
        if (et_outbox_ping(d->ob) != APR_SUCCESS) {
            d->conn_lost = 1;
        }
    }
    etd_ob_leave(d);

    for (job = jobs; job; job = next) {
        next = job->next;
        if (job->chain) {
            follow_on(d, job);
        }
        if (job->stored == APR_EBUSY) {
            et_log(&d->log, ET_LOG_WARNING, p,
                   "ET01002: lease of txn=%s expired during "
                   "the call; its outcome was left to the new "
                   "holder (raise EventTriggerLease above the "
                   "call timeout)", job->ev->txn);
        }
        apr_pool_destroy(job->pool);
    }
    return start_claims(d, p, got, lease_until);
}

int etd_may_write(const dispatcher_t *d)
{
    const et_space_t *sp = d->conf->space;

    return !sp || et_reserve_held(sp->reserve_path, sp->reserve);
}

/*
 * SQLite: a writer whose store found the disk full gives the reserve up
 * (et_guard.h), and that room is for the events of requests admitted
 * already. Until the reserve is held again the dispatcher writes nothing
 * of its own - no outcome, claim, probe or deletion: each takes pages, a
 * delivery an index entry - and its finished calls' outcomes wait in
 * d->done. The guard holds the reserve again on a request's check, and
 * none may come (they are refused meanwhile): while held back, the
 * dispatcher makes that check itself once a second. Claiming thread only.
 * Non-zero if it may write.
 */
static int room_to_write(dispatcher_t *d, apr_pool_t *p, apr_time_t now)
{
    const et_space_t *sp = d->conf->space;
    apr_off_t avail = -1;
    int held = etd_may_write(d);

    if (!held && (!d->held_back
                  || now - d->space_checked >= ET_SPACE_RECHECK)) {
        d->space_checked = now;
        et_space_check(sp, &avail, &held);
    }
    if (!held && !d->held_back) {
        d->held_back = 1;
        et_log(&d->log, ET_LOG_WARNING, p,
               "ET01059: the outbox's disk is full and its reserve, kept "
               "for the events of requests already admitted, is given up "
               "(%" APR_OFF_T_FMT "K free): the dispatcher writes nothing "
               "(no outcome, no claim) until the reserve is held again; "
               "calls under way end and their outcomes wait",
               avail >= 0 ? avail / 1024 : 0);
    }
    else if (held && d->held_back) {
        d->held_back = 0;
        et_log(&d->log, ET_LOG_NOTICE, p,
               "ET01060: the outbox's reserve is held again: the "
               "dispatcher records outcomes and claims again");
    }
    return held;
}

/* Calls made whose outcomes are not written (a stop while held back):
 * their events are made again when their leases end. */
static void drop_done(dispatcher_t *d, apr_pool_t *p)
{
    job_t *job, *next;
    int n = 0;

    apr_thread_mutex_lock(d->done_lock);
    job = d->done;
    d->done = NULL;
    d->ndone = 0;
    apr_thread_mutex_unlock(d->done_lock);
    for (; job; job = next, n++) {
        next = job->next;
        if (job->chain) {
            follow_on(d, job);        /* at stop: drops the followers */
        }
        apr_pool_destroy(job->pool);
    }
    if (n) {
        et_log(&d->log, ET_LOG_WARNING, p,
               "ET01061: stopping while the outbox's reserve is given up: "
               "%d outcomes not recorded; those events are made again when "
               "their leases end", n);
    }
}

/* Old delivered and dead events go, a batch at a time, so that the
 * outbox does not grow without end. */
static void prune(dispatcher_t *d, apr_pool_t *p)
{
    const et_dispatch_conf_t *conf = d->conf;
    apr_time_t now = apr_time_now();
    int n = 0, total = 0;

    if (!conf->keep_delivered && !conf->keep_dead) {
        return;
    }
    do {
        etd_ob_enter(d);
        if (!etd_may_write(d)) {
            etd_ob_leave(d);          /* held back: see room_to_write */
            break;
        }
        if (et_outbox_prune(d->ob,
                            conf->keep_delivered ? now - conf->keep_delivered
                                                 : 0,
                            conf->keep_dead ? now - conf->keep_dead : 0,
                            ET_PRUNE_BATCH, &n) != APR_SUCCESS) {
            et_log(&d->log, ET_LOG_ERR, p,
                   "ET01014: cannot delete old events: %s",
                   et_outbox_error(d->ob));
            n = 0;
        }
        etd_ob_leave(d);
        total += n;
    } while (n == ET_PRUNE_BATCH && !*conf->stop);
    if (total) {
        et_log(&d->log, ET_LOG_INFO, p,
               "ET01015: deleted %d old events from the outbox",
               total);
    }
}

/* Copy a claimed event into its job's own pool. */
static job_t *make_job(dispatcher_t *d, const et_event_t *src,
                       apr_time_t lease_until)
{
    apr_pool_t *p;
    job_t *job;
    et_event_t *ev;

    apr_pool_create(&p, d->jobs_pool);
    apr_pool_tag(p, "et_job");
    job = apr_pcalloc(p, sizeof(*job));
    ev = apr_pmemdup(p, src, sizeof(*src));
    ev->txn = apr_pstrdup(p, src->txn);
    ev->site = apr_pstrdup(p, src->site);
    ev->oid = apr_pstrdup(p, src->oid);
    ev->url = apr_pstrdup(p, src->url);
    ev->content_type = apr_pstrdup(p, src->content_type);
    ev->body = src->body ? apr_pstrmemdup(p, src->body, src->body_len) : NULL;
    ev->error = apr_pstrdup(p, src->error);
    ev->traceparent = apr_pstrdup(p, src->traceparent);
    ev->tracestate = apr_pstrdup(p, src->tracestate);
    ev->headers = apr_pstrdup(p, src->headers);
    ev->lease_owner = NULL;           /* the job's lease is d->owner's */
    job->d = d;
    job->pool = p;
    job->ev = ev;
    job->lease_until = lease_until;
    return job;
}

static void drain(apr_file_t *f)
{
    char buf[256];
    apr_size_t n;

    do {
        n = sizeof(buf);
    } while (apr_file_read(f, buf, &n) == APR_SUCCESS && n == sizeof(buf));
}

static apr_status_t setup(dispatcher_t *d, apr_pool_t *p,
                          const et_dispatch_conf_t *conf)
{
    apr_allocator_t *alloc;
    apr_thread_mutex_t *amutex;
    const char *err = NULL;
    apr_status_t rv;

    d->conf = conf;
    d->log.fn = conf->log;
    d->log.baton = conf->log_baton;
    d->log.level = conf->log_level ? conf->log_level : ET_LOG_DEBUG;
    d->pool = p;
    d->soonest = APR_INT64_MAX;
    apr_generate_random_bytes((unsigned char *)&d->rnd, sizeof(d->rnd));
    d->rnd |= 1;                      /* xorshift's one fixed point is 0 */
    apr_generate_random_bytes((unsigned char *)&d->span, sizeof(d->span));
    d->owner = apr_psprintf(p, "%" APR_PID_T_FMT "@%" APR_TIME_T_FMT,
                            getpid(), apr_time_now());

    rv = et_outbox_open(&d->ob, p, conf->store, 0, &err);
    if (rv != APR_SUCCESS) {
        et_log(&d->log, ET_LOG_ERR, p,
               "ET01004: dispatcher cannot open the outbox: %s",
               err ? err : "unknown error");
        return rv;
    }
    /* The claims and finishes seek all over the indexes of a large
     * backlog; SQLite's 2 MiB default then rereads pages on every round. */
    if (et_outbox_cache(d->ob, ET_DISPATCH_CACHE_KIB) != APR_SUCCESS) {
        et_log(&d->log, ET_LOG_WARNING, p,
               "ET01020: cannot size the outbox's page cache: "
               "%s", et_outbox_error(d->ob));
    }
    if ((rv = apr_thread_mutex_create(&d->ob_lock, APR_THREAD_MUTEX_DEFAULT,
                                      p)) != APR_SUCCESS
        || (rv = et_http_curl_create(&d->http, p)) != APR_SUCCESS
        || (rv = apr_file_pipe_create_ex(&d->done_r, &d->done_w,
                                         APR_FULL_NONBLOCK, p)) != APR_SUCCESS) {
        return rv;
    }

    /* job pools come and go on several threads: give them a locked allocator */
    if ((rv = apr_allocator_create(&alloc)) != APR_SUCCESS) {
        return rv;
    }
    apr_pool_create_ex(&d->jobs_pool, p, NULL, alloc);
    apr_allocator_owner_set(alloc, d->jobs_pool);
    apr_thread_mutex_create(&amutex, APR_THREAD_MUTEX_DEFAULT, d->jobs_pool);
    apr_allocator_mutex_set(alloc, amutex);
    apr_allocator_max_free_set(alloc, 1024 * 1024);

    if ((rv = apr_thread_mutex_create(&d->cb_lock, APR_THREAD_MUTEX_DEFAULT,
                                      p)) != APR_SUCCESS
        || (rv = apr_thread_mutex_create(&d->done_lock,
                                         APR_THREAD_MUTEX_DEFAULT, p))
           != APR_SUCCESS
        || (rv = apr_thread_mutex_create(&d->q_lock,
                                         APR_THREAD_MUTEX_DEFAULT, p))
           != APR_SUCCESS) {
        return rv;
    }
    apr_pool_create(&d->cb_pool, p);
    d->circuits = apr_hash_make(d->cb_pool);
    etd_load_circuits(d, p);
    etd_load_sites(d, p);

    set_cap(d);
    return APR_SUCCESS;
}

/* Linux: what `top -H` and `ps -L` show. */
void et_thread_name(const char *name)
{
#ifdef __linux__
    prctl(PR_SET_NAME, name, 0, 0, 0);
#else
    (void)name;
#endif
}

apr_status_t et_dispatch_run(apr_pool_t *p, const et_dispatch_conf_t *conf)
{
    dispatcher_t d;
    apr_pool_t *iter;
    apr_pollfd_t fds[2];
    apr_status_t rv;
    apr_time_t next_prune, last_round;
    apr_time_t known_due = 0, due_read = 0;   /* the outbox's next due */
    apr_thread_t *ckpt;
    int nfds = 0;

    memset(&d, 0, sizeof(d));
    if ((rv = setup(&d, p, conf)) != APR_SUCCESS) {
        return rv;
    }
    if ((rv = apr_thread_create(&d.caller, NULL, etd_caller, &d, p))
        != APR_SUCCESS) {
        et_log(&d.log, ET_LOG_ERR, p,
               "ET01024: dispatcher cannot start its calling "
               "thread: %pm", &rv);
        return rv;
    }
    if (apr_thread_create(&ckpt, NULL, etd_checkpointer, &d, p)
        != APR_SUCCESS) {
        ckpt = NULL;                  /* commits checkpoint, as SQLite does */
    }
    et_log(&d.log, ET_LOG_INFO, p,
           "ET01005: dispatcher %s started with %d workers",
           d.owner, conf->workers);
    if (conf->offer) {
        et_lessee_t l;

        l.reserve = lessee_reserve;
        l.settle = lessee_settle;
        l.baton = &d;
        conf->offer(conf->offer_baton, &l);
    }

    memset(fds, 0, sizeof(fds));
    fds[nfds].p = p;
    fds[nfds].desc_type = APR_POLL_FILE;
    fds[nfds].reqevents = APR_POLLIN;
    fds[nfds++].desc.f = d.done_r;
    if (conf->wakeup) {
        fds[nfds].p = p;
        fds[nfds].desc_type = APR_POLL_FILE;
        fds[nfds].reqevents = APR_POLLIN;
        fds[nfds++].desc.f = conf->wakeup;
    }

    apr_pool_create(&iter, p);
    next_prune = apr_time_now() + ET_PRUNE_EVERY;
    last_round = 0;
    while (!*conf->stop) {
        apr_time_t now = apr_time_now();
        int room, batch, writable;
        apr_interval_time_t wait = conf->poll;
        apr_int32_t nready;
        apr_time_t due;
        int ndone;

        apr_pool_clear(iter);
        set_cap(&d);
        room = (int)apr_atomic_read32(&d.cap)
               - (int)apr_atomic_read32(&d.inflight);
        batch = (int)apr_atomic_read32(&d.batch);
        writable = room_to_write(&d, iter, now);
        if (writable && now >= next_prune) {
            prune(&d, iter);
            next_prune = apr_time_now() + ET_PRUNE_EVERY;
        }
        apr_thread_mutex_lock(d.done_lock);
        ndone = d.ndone;
        apr_thread_mutex_unlock(d.done_lock);

        if (!writable) {
            /* finished calls nudge us; the room is checked once a second */
            wait = ET_SPACE_RECHECK;
        }
        /* a chained call waits for its predecessor's commit: no gap */
        else if (ndone >= batch || apr_atomic_read32(&d.chains) > 0
                 || now - last_round >= ET_ROUND_GAP) {
            int claimed = do_round(&d, iter, room);

            if (d.conn_lost) {
                et_log(&d.log, ET_LOG_ERR, iter,
                       "ET01041: the outbox no longer "
                       "answers (%s); the dispatcher stops, to "
                       "start again with new connections",
                       et_outbox_error(d.ob));
                *conf->stop = 1;      /* the other threads end as for a stop */
                break;
            }
            last_round = now;
            if (room > 0 && claimed < room) {
                /* caught up: the soonest retry or lease expiry bounds the
                 * sleep. Read (the connection's lock only) when what was
                 * read last is past or older than the poll interval;
                 * meanwhile only our own outcomes (d.soonest) can make
                 * it sooner: new events wake us, and are claimed. */
                if (d.soonest < known_due) {
                    known_due = d.soonest;
                }
                d.soonest = APR_INT64_MAX;
                if (known_due <= now || now - due_read >= conf->poll) {
                    apr_thread_mutex_lock(d.ob_lock);
                    rv = et_outbox_next_due(d.ob, now, &due);
                    apr_thread_mutex_unlock(d.ob_lock);
                    /* on error: read again after the next round */
                    known_due = rv == APR_SUCCESS ? due
                                : rv == APR_NOTFOUND ? APR_INT64_MAX : now;
                    due_read = now;
                }
                if (known_due - now < wait) {
                    wait = known_due > now ? known_due - now : 0;
                }
                /* events due already wait for a pause to end (one that
                 * has ended waits for its probe: a round, or a nudge) */
                due = etd_pause_ends(&d);
                if (due > now && due - now < wait) {
                    wait = due - now;
                }
                if (wait <= 0 && claimed == 0) {
                    /* due but not claimable: behind an earlier event of
                     * the same object that is in flight, or its endpoint
                     * paused. A finishing call nudges us. */
                    wait = conf->poll;
                }
            }
            /* else every lease is taken: a finishing call nudges us */
        }
        else {
            /* a round was just made: wait for the gap, or a full batch */
            wait = ET_ROUND_GAP - (now - last_round);
        }
        if (wait > 0) {
            /* apr_poll counts in milliseconds: round up, never spin */
            wait = (wait + 999) / 1000 * 1000;
            if (apr_poll(fds, nfds, &nready, wait) == APR_SUCCESS) {
                drain(d.done_r);
                if (conf->wakeup) {
                    drain(conf->wakeup);
                }
            }
        }
    }

    /* Stop claiming, and stop the intake leasing for us (it returns once
     * no commit is handing us events); the calling thread ends its calls
     * (see etd_caller) and hands every job back; their outcomes are stored
     * below, and leases of events never handed over are released. */
    if (conf->offer) {
        conf->offer(conf->offer_baton, NULL);
    }
    et_http_wake(d.http);
    {
        apr_status_t trv;

        apr_thread_join(&trv, d.caller);
    }
    if (room_to_write(&d, p, apr_time_now())) {
        do_round(&d, p, 0);
        etd_ob_enter(&d);
        if (etd_may_write(&d)
            && et_outbox_release(d.ob, d.owner) != APR_SUCCESS) {
            et_log(&d.log, ET_LOG_WARNING, p,
                   "ET01007: cannot release leases at stop: %s",
                   et_outbox_error(d.ob));
        }
        etd_ob_leave(&d);
    }
    /* what was not written (held back): their leases end by themselves */
    drop_done(&d, p);
    if (ckpt) {
        apr_status_t trv;

        apr_thread_join(&trv, ckpt);
    }
    et_log(&d.log, ET_LOG_INFO, p, "ET01008: dispatcher %s stopped", d.owner);
    return d.conn_lost ? APR_EGENERAL : APR_SUCCESS;
}
