/* Licensed under the Apache License, Version 2.0. */
/**
 * @file et_dispatch_int.h
 * @brief The dispatcher's parts, private to them (et_dispatch.h is the
 *        public side). Which thread runs what, and which lock guards what,
 *        is said at dispatcher_t and at the top of each part:
 *        - et_dispatch.c: the claim loop (main thread) and the intake's
 *          lessee (intake thread);
 *        - et_dispatch_call.c: the calling thread;
 *        - et_dispatch_site.c: per-site state and endpoint circuits;
 *        - et_judge.c: the outcome of an attempt (no state);
 *        - et_checkpoint.c: the checkpointer thread.
 */
#ifndef ET_DISPATCH_INT_H
#define ET_DISPATCH_INT_H

#include <apr_hash.h>
#include <apr_thread_mutex.h>
#include <apr_thread_proc.h>

#include "et_dispatch.h"
#include "et_circuit.h"
#include "et_log.h"

/*
 * Threads and shared state:
 *  - the checkpointer thread has its own connection and pool and shares
 *    nothing but the read-only conf and log and the stop flag;
 *  - the outbox connection is shared by the claiming thread and the
 *    calling thread (circuit_store) and guarded by d->ob_lock (an
 *    et_outbox_t is not thread-safe), and every use of it also takes
 *    conf->lock, the outbox's cross-process writer lock (etd_ob_enter);
 *  - d->http, d->running and d->waiting are the calling thread's alone
 *    (et_http_wake() excepted, which is safe from any thread);
 *  - claimed jobs go to the calling thread through d->queue (guarded by
 *    d->q_lock);
 *  - job pools are children of d->jobs_pool, whose allocator carries a
 *    mutex, so the claiming thread may create and destroy them while the
 *    calling thread allocates from others;
 *  - d->inflight, d->cap, d->batch and d->call_us are only touched with
 *    apr_atomic_*;
 *  - the calling thread hands each finished job (and the job's pool) back
 *    through d->done and d->ndone (guarded by d->done_lock); the claiming
 *    thread stores the outcomes and makes the next claims in one
 *    transaction (a "round") and destroys the pools. Except a chained
 *    job when nothing else is being called: the calling thread stores
 *    its outcome itself (etd_store_alone, under the outbox's locks) and
 *    destroys its pool (et_dispatch_call.c, follow_here);
 *  - the sites' state (endpoint health and whether the last claim took
 *    all that was due) and their hash are guarded by d->cb_lock; their
 *    pool is the dispatcher's, used only under that lock;
 *  - the intake's thread leases fresh events for us (et_dispatch.c's
 *    and lessee_settle, between offer(l) and offer(NULL)): it reads
 *    the sites' state under d->cb_lock, counts d->inflight with atomics
 *    and queues jobs like the claiming thread (jobs_pool, d->q_lock);
 *  - d->conf, d->log and the et_site_t found by conf->lookup are
 *    read-only.
 */
typedef struct dispatcher_t {
    const et_dispatch_conf_t *conf;
    et_logger_t log;                  /* over conf->log: read-only */
    apr_pool_t *pool;
    apr_pool_t *jobs_pool;
    et_outbox_t *ob;
    apr_thread_mutex_t *ob_lock;
    et_http_t *http;                  /* calling thread only */
    apr_thread_t *caller;
    apr_thread_mutex_t *q_lock;       /* guards queue and queue_tail */
    struct job_t *queue, *queue_tail; /* claimed, for the calling thread */
    struct job_t *waiting, *waiting_tail; /* calling thread's, in order */
    int running;                      /* calls under way: calling thread */
    const char *owner;
    volatile apr_uint32_t inflight;
    apr_file_t *done_r, *done_w;      /* workers nudge the claimer */
    apr_thread_mutex_t *cb_lock;
    apr_hash_t *circuits;             /* site name -> site_state_t */
    apr_pool_t *cb_pool;
    apr_thread_mutex_t *done_lock;    /* guards done and ndone */
    struct job_t *done;               /* calls made, outcome not yet stored */
    int ndone;
    volatile apr_uint32_t cap;        /* events leased at most (set_cap) */
    volatile apr_uint32_t batch;      /* outcomes that make a full round */
    volatile apr_uint32_t call_us;    /* recent calls' mean duration, µs */
    volatile apr_uint32_t chains;     /* jobs handed back whose followers
                                       * wait for their outcome's commit:
                                       * the next round comes at once */
    apr_uint32_t rnd;                 /* retry jitter: calling thread only */
    apr_uint64_t span;                /* attempts' parent ids: likewise */
    apr_array_header_t *sites;        /* names claimed for, in turn */
    int next_site;                    /* claim loop's claiming thread only */
    int conn_lost;                    /* claiming thread: the outbox no
                                       * longer answers (see do_round) */
    apr_time_t circuits_read;         /* claiming thread: when et_circuit
                                       * was last read (etd_circuits_sync) */
    int held_back;                    /* claiming thread: the outbox's
                                       * reserve is given up, nothing is
                                       * written (room_to_write) */
    apr_time_t space_checked;         /* claiming thread: its last check */
    apr_time_t soonest;               /* claiming thread: the soonest due
                                       * among outcomes it stored since it
                                       * last read the outbox's (next_due) */
} dispatcher_t;

/* Non-zero if the dispatcher may write (SQLite: the reserve kept for
 * admitted events is held; see room_to_write in et_dispatch.c). A stat(),
 * any thread. */
int etd_may_write(const dispatcher_t *d);

typedef struct job_t {
    dispatcher_t *d;
    apr_pool_t *pool;                 /* owns the job; see do_round */
    et_event_t *ev;
    apr_time_t lease_until;           /* as claimed */
    et_outcome_t out;
    apr_status_t stored;              /* writing the outcome: see do_round */
    int probe;                        /* the call that probes a paused site */
    int untried;                      /* handed back uncalled: unclaim it */
    const char *trace_id;             /* of the traceparent sent, or NULL */
    struct job_t *chain;              /* the events after this one of its
                                       * object, leased with it (chained
                                       * delivery): the next one is started
                                       * once this one's outcome (delivered
                                       * or dead) is committed, by the
                                       * round that stores it; given back
                                       * untried otherwise. Not in
                                       * d->inflight until started. */
    int chained;                      /* started after its predecessor's */
    struct job_t *next;               /* in a queue, then in d->done */
} job_t;

/* What the dispatcher keeps per site (d->circuits, under d->cb_lock). */
typedef struct site_state_t {
    et_circuit_t cb;                  /* its endpoint's health */
    int caught_up;                    /* its last claim took all that was
                                       * due: fresh events may skip the
                                       * claim (lessee_reserve) */
    /* its et_circuit row as this dispatcher last read or wrote it: a row
     * that differs was written by another dispatcher, whose pause (or
     * resumption) we adopt (etd_circuits_sync) */
    int seen;                         /* a row was read or written */
    int seen_state;
    apr_time_t seen_open_until, seen_changed;
} site_state_t;

/* Whether a site's events may be claimed now (etd_gate_of). */
typedef enum {
    ET_GATE_PAUSED,                   /* endpoint paused, or a probe out */
    ET_GATE_OPEN,                     /* healthy */
    ET_GATE_PROBE                     /* paused, and one event may probe */
} et_gate_e;

/* et_dispatch.c: the claim loop's (any thread may call these). */
void etd_ob_enter(dispatcher_t *d);
void etd_ob_leave(dispatcher_t *d);
/* The outcome of one job in a transaction of its own (sets job->stored). */
apr_status_t etd_store_alone(dispatcher_t *d, job_t *job);

/* et_dispatch_call.c: the calling thread. */
void *APR_THREAD_FUNC etd_caller(apr_thread_t *thd, void *data);
/* @a job and the events chained to it back to the claiming thread
 * uncalled (d->done, untried): counted out of d->inflight, which must
 * count @a job. Any thread. */
void etd_give_back(dispatcher_t *d, job_t *job);

/* et_dispatch_site.c: per-site state; each takes d->cb_lock itself,
 * except where it says "with d->cb_lock held". */
site_state_t *etd_site_state(dispatcher_t *d, const char *site);
et_gate_e etd_gate_of(const et_circuit_t *c);
et_gate_e etd_circuit_gate(dispatcher_t *d, const char *site);
void etd_circuit_after(dispatcher_t *d, apr_pool_t *p, const et_site_t *site,
                       const et_event_t *ev, const et_http_response_t *resp,
                       const char *error);
void etd_probe_started(dispatcher_t *d, apr_pool_t *p, const char *name);
void etd_probe_lost(dispatcher_t *d, const char *name);
apr_time_t etd_pause_ends(dispatcher_t *d);
void etd_circuits_sync(dispatcher_t *d, apr_pool_t *p, int take);
void etd_load_circuits(dispatcher_t *d, apr_pool_t *p);
void etd_load_sites(dispatcher_t *d, apr_pool_t *p);

/* et_judge.c: printable, bounded text of a receiver's answer. */
const char *et_judge_excerpt(apr_pool_t *p, const char *body, apr_size_t len);

/* et_checkpoint.c: the checkpointer thread; @a data is the dispatcher. */
void *APR_THREAD_FUNC etd_checkpointer(apr_thread_t *thd, void *data);

#endif /* ET_DISPATCH_INT_H */
