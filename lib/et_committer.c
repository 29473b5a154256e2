/* Licensed under the Apache License, Version 2.0. */
/*
 * Group commit (leader/follower), see et_committer.h.
 */

#include <apr_strings.h>
#include <apr_thread_mutex.h>
#include <apr_thread_cond.h>

#include "et_committer.h"
#include "et_outbox.h"
#include "et_guard.h"
#include "et_log.h"

typedef struct item_t {
    et_event_t *ev;
    struct item_t *next;
    apr_thread_cond_t *cond;          /* its waiter's own: woken alone */
    apr_status_t rv;
    char err[200];                    /* filled by the leader */
    int done;
    int lead;                         /* handed the lead by the last leader */
} item_t;

struct et_writer_t {
    apr_pool_t *pool;                 /* the connection's pools' parent */
    const char *store;
    apr_global_mutex_t *lock;
    et_outbox_t *ob;                  /* opened on first use */
    apr_pool_t *ob_pool;
    const char *reserve;              /* SQLite: the room kept back */
    /* PostgreSQL: the local spool (et_writer_spool), opened on first use */
    const char *spool;
    et_guard_t *g;
    et_logger_t log;
    et_outbox_t *sp;
    apr_pool_t *sp_pool;
};

et_writer_t *et_writer_create(apr_pool_t *p, const char *store,
                              apr_global_mutex_t *lock)
{
    et_writer_t *w = apr_pcalloc(p, sizeof(*w));

    w->pool = p;
    w->store = store;
    w->lock = lock;
    w->reserve = et_reserve_path(p, store);
    return w;
}

void et_writer_spool(et_writer_t *w, const char *spool, et_guard_t *g,
                     et_log_fn *log, void *baton)
{
    w->spool = spool && g ? spool : NULL;
    w->g = g;
    w->log.fn = log;
    w->log.baton = baton;
    w->log.level = ET_LOG_ERR;
}

static void spool_close(et_writer_t *w)
{
    if (w->sp) {
        et_outbox_close(w->sp);
        apr_pool_destroy(w->sp_pool);
        w->sp = NULL;
    }
}

void et_writer_close(et_writer_t *w)
{
    if (w->ob) {
        et_outbox_close(w->ob);
        apr_pool_destroy(w->ob_pool);
        w->ob = NULL;
    }
}

static apr_status_t writer_open(et_writer_t *w, char *err, apr_size_t errlen)
{
    const char *oerr = NULL;
    apr_status_t rv;

    /* the connection is the writer's: a subpool it can drop; the driver's
     * error text lives in it, so it is copied first */
    apr_pool_create(&w->ob_pool, w->pool);
    rv = et_outbox_open(&w->ob, w->ob_pool, w->store, 0, &oerr);
    if (rv != APR_SUCCESS) {
        apr_cpystrn(err, oerr ? oerr : "cannot open the outbox", errlen);
        apr_pool_destroy(w->ob_pool);
        w->ob = NULL;
    }
    return rv;
}

apr_status_t et_writer_enter(et_writer_t *w, char *err, apr_size_t errlen)
{
    apr_status_t rv;

    *err = '\0';
    /* with a spool, et_writer_store opens it, and stores there if it
     * cannot */
    if (!w->ob && !w->spool
        && (rv = writer_open(w, err, errlen)) != APR_SUCCESS) {
        return rv;
    }
    if (w->lock && (rv = apr_global_mutex_lock(w->lock)) != APR_SUCCESS) {
        apr_cpystrn(err, "cannot take the outbox lock", errlen);
        return rv;
    }
    return APR_SUCCESS;
}

static int any_failed(const apr_status_t *each, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        if (each[i] != APR_SUCCESS) {
            return 1;
        }
    }
    return 0;
}

/* The shared outbox: the batch, on a new connection once more if the
 * first one no longer answered. The lock is the caller's. */
static apr_status_t outbox_store(et_writer_t *w, et_event_t **evs, int n,
                                 apr_status_t *each, char *err,
                                 apr_size_t errlen)
{
    char oerr[256] = "";
    apr_status_t rv;

    if (!w->ob) {
        /* et_writer_enter could not open it (there is a spool) */
        rv = writer_open(w, oerr, sizeof(oerr));
        if (rv != APR_SUCCESS) {
            apr_snprintf(err, errlen, "cannot open the outbox: %s", oerr);
            return rv;
        }
    }
    rv = et_outbox_insert_batch(w->ob, evs, n, each);
    if ((rv != APR_SUCCESS || any_failed(each, n)) && w->reserve
        && et_outbox_full(w->ob)
        && et_reserve_release(w->reserve) == APR_SUCCESS) {
        /* Out of room: these events were admitted by the check before
         * their consoles acted (et_guard.h), and the reserve is theirs.
         * Released, it stays so until the check finds room again, and
         * no new request is admitted meanwhile. */
        rv = et_outbox_insert_batch(w->ob, evs, n, each);
    }
    if ((rv != APR_SUCCESS || any_failed(each, n))
        && et_outbox_ping(w->ob) != APR_SUCCESS) {
        /* The connection itself is gone (a PostgreSQL server restarted,
         * or ended the session): a new one, and the batch once more on
         * it, rather than lose it. A txn is stored once, whatever the
         * first try left behind. */
        et_writer_close(w);
        rv = writer_open(w, oerr, sizeof(oerr));
        if (rv == APR_SUCCESS) {
            rv = et_outbox_insert_batch(w->ob, evs, n, each);
        }
    }
    if (rv == APR_SUCCESS) {
        if (any_failed(each, n)) {
            apr_cpystrn(err, et_outbox_error(w->ob), errlen);
        }
    }
    else if (w->ob) {
        apr_cpystrn(err, et_outbox_error(w->ob), errlen);
        /* a broken connection is opened again for the next batch */
        et_writer_close(w);
    }
    else {
        apr_snprintf(err, errlen, "the outbox connection broke, and a new "
                     "one cannot be opened: %s", oerr);
    }
    return rv;
}

/* Store the events of @a evs whose each[] is not APR_SUCCESS in the
 * spool, counted already (et_guard_spool_join or _add), and say how it
 * went in each[]; @a why: what the outbox said. */
static void spool_store(et_writer_t *w, et_event_t **evs, int n,
                        apr_status_t *each, const char *why, char *err,
                        apr_size_t errlen)
{
    apr_pool_t *p;
    et_event_t **sub;
    apr_status_t *sub_each, rv;
    apr_uint32_t ok = 0, count = 0;
    const char *oerr = NULL;
    int *map, i, k = 0;

    apr_pool_create(&p, w->pool);
    sub = apr_palloc(p, n * sizeof(*sub));
    sub_each = apr_palloc(p, n * sizeof(*sub_each));
    map = apr_palloc(p, n * sizeof(*map));
    for (i = 0; i < n; i++) {
        if (each[i] != APR_SUCCESS) {
            /* not leased: the spool is no dispatcher's (et_intake.h) */
            evs[i]->lease_owner = NULL;
            sub[k] = evs[i];
            map[k++] = i;
        }
    }
    rv = APR_SUCCESS;
    if (!w->sp) {
        apr_pool_create(&w->sp_pool, w->pool);
        rv = et_outbox_open(&w->sp, w->sp_pool, w->spool, 0, &oerr);
        if (rv != APR_SUCCESS) {
            oerr = apr_pstrdup(p, oerr ? oerr : "cannot open it");
            apr_pool_destroy(w->sp_pool);
            w->sp = NULL;
        }
    }
    if (rv == APR_SUCCESS) {
        rv = et_outbox_insert_batch(w->sp, sub, k, sub_each);
        if (rv != APR_SUCCESS || any_failed(sub_each, k)) {
            oerr = apr_pstrdup(p, et_outbox_error(w->sp));
            spool_close(w);           /* opened again for the next one */
        }
    }
    for (i = 0; i < k; i++) {
        each[map[i]] = rv != APR_SUCCESS ? rv : sub_each[i];
        ok += each[map[i]] == APR_SUCCESS;
    }
    if (ok < (apr_uint32_t)k) {
        apr_snprintf(err, errlen, "%s; and the local spool %s failed too: "
                     "%s", why, w->spool + 8, oerr ? oerr : "?");
    }
    if (et_guard_spool_stored(w->g, ok, k - ok, apr_time_now(), &count)) {
        et_log(&w->log, ET_LOG_ERR, p, "ET00100: %u event(s) stored in "
               "the local spool %s instead of the outbox since the last "
               "line (this one: txn=%s), because %s; write requests are "
               "refused until the dispatcher has forwarded them", count,
               w->spool + 8, sub[0]->txn, why);
    }
    apr_pool_destroy(p);
}

apr_status_t et_writer_store(et_writer_t *w, et_event_t **evs, int n,
                             apr_status_t *each, char *err,
                             apr_size_t errlen)
{
    apr_uint32_t failed = 0;
    char why[256];
    apr_status_t rv;
    int i;

    if (w->spool && et_guard_spool_join(w->g, (apr_uint32_t)n)) {
        /* Events wait in the spool: these go behind them, so that none
         * is delivered before an earlier one of its object. */
        if (w->lock) {
            apr_global_mutex_unlock(w->lock);
        }
        for (i = 0; i < n; i++) {
            each[i] = APR_EAGAIN;
        }
        spool_store(w, evs, n, each, "earlier events wait there", err,
                    errlen);
        return APR_SUCCESS;
    }
    rv = outbox_store(w, evs, n, each, err, errlen);
    if (w->lock) {
        apr_global_mutex_unlock(w->lock);
    }
    if (!w->spool || (rv == APR_SUCCESS && !any_failed(each, n))) {
        return rv;
    }
    /* An event the outbox refused while it answers and may write is at
     * fault itself (no spool would make it storable): lost, as without
     * a spool. Otherwise the outbox is down: the spool takes them. */
    if (rv == APR_SUCCESS && w->ob
        && et_outbox_writable(w->ob) == APR_SUCCESS) {
        return rv;
    }
    for (i = 0; i < n; i++) {
        if (rv != APR_SUCCESS) {
            each[i] = rv;
        }
        failed += each[i] != APR_SUCCESS;
    }
    et_guard_spool_add(w->g, failed);
    apr_snprintf(why, sizeof(why), "the outbox cannot take them: %s",
                 err[0] ? err : "it failed");
    spool_store(w, evs, n, each, why, err, errlen);
    return APR_SUCCESS;
}

struct et_committer_t {
    int max;
    et_writer_t *w;                   /* used by the current leader only */
    apr_thread_mutex_t *mutex;        /* guards everything below */
    item_t *head, *tail;              /* queued, oldest first */
    int leading;                      /* a leader is committing */
};

apr_status_t et_committer_create(et_committer_t **pc, apr_pool_t *p,
                                 const char *store, apr_global_mutex_t *lock,
                                 int max)
{
    et_committer_t *c = apr_pcalloc(p, sizeof(*c));
    apr_status_t rv;

    c->w = et_writer_create(p, store, lock);
    c->max = max > 0 ? max : 1;
    if ((rv = apr_thread_mutex_create(&c->mutex, APR_THREAD_MUTEX_DEFAULT, p))
        != APR_SUCCESS) {
        return rv;
    }
    *pc = c;
    return APR_SUCCESS;
}

void et_committer_spool(et_committer_t *c, const char *spool,
                        et_guard_t *g, et_log_fn *log, void *baton)
{
    et_writer_spool(c->w, spool, g, log, baton);
}

apr_status_t et_committer_store(et_committer_t *c, et_event_t *ev,
                                apr_pool_t *ev_pool, const char **err)
{
    item_t me;
    apr_status_t rv;

    memset(&me, 0, sizeof(me));
    me.ev = ev;
    /* One condition per waiter, so that a commit wakes the threads whose
     * events it holds and no others (a shared one woke every waiter, most
     * only to sleep again: a storm of context switches under load). */
    if ((rv = apr_thread_cond_create(&me.cond, ev_pool)) != APR_SUCCESS) {
        *err = "cannot create a condition variable";
        return rv;
    }

    apr_thread_mutex_lock(c->mutex);
    if (c->tail) {
        c->tail->next = &me;
    }
    else {
        c->head = &me;
    }
    c->tail = &me;
    if (!c->leading) {
        c->leading = 1;
        me.lead = 1;
    }

    while (!me.done) {
        if (me.lead) {
            et_event_t *evs[256];
            apr_status_t each[256];
            item_t *batch[256];
            char berr[200];
            int n = 0, i, max = c->max < 256 ? c->max : 256;

            /* Lead: first wait for the other writers, and only then take
             * the queue's head (our own item is among them), so that the
             * events queued during that wait go in this commit rather
             * than wait for the next one. */
            me.lead = 0;
            apr_thread_mutex_unlock(c->mutex);
            rv = et_writer_enter(c->w, berr, sizeof(berr));
            apr_thread_mutex_lock(c->mutex);
            while (c->head && n < max) {
                batch[n] = c->head;
                evs[n] = c->head->ev;
                c->head = c->head->next;
                n++;
            }
            if (!c->head) {
                c->tail = NULL;
            }
            apr_thread_mutex_unlock(c->mutex);

            if (rv == APR_SUCCESS) {
                rv = et_writer_store(c->w, evs, n, each, berr,
                                     sizeof(berr));
            }

            apr_thread_mutex_lock(c->mutex);
            for (i = 0; i < n; i++) {
                batch[i]->rv = rv != APR_SUCCESS ? rv : each[i];
                if (batch[i]->rv != APR_SUCCESS) {
                    apr_cpystrn(batch[i]->err,
                                berr[0] ? berr : "the outbox refused it",
                                sizeof(batch[i]->err));
                }
                batch[i]->done = 1;
                if (batch[i] != &me) {
                    apr_thread_cond_signal(batch[i]->cond);
                }
            }
            if (c->head) {
                /* those who queued meanwhile: the oldest leads them */
                c->head->lead = 1;
                apr_thread_cond_signal(c->head->cond);
            }
            else {
                c->leading = 0;
            }
        }
        else {
            apr_thread_cond_wait(me.cond, c->mutex);
        }
    }
    apr_thread_mutex_unlock(c->mutex);
    if (me.rv != APR_SUCCESS) {
        *err = apr_pstrdup(ev_pool, me.err);
    }
    return me.rv;
}
