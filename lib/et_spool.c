/* Licensed under the Apache License, Version 2.0. */
/*
 * The local spool's forwarder, see et_spool.h.
 *
 * Thread safety: runs on a thread of its own (in the dispatcher process),
 * with its own connections and an unmanaged pool; it shares the spool's
 * count (atomics, et_guard.h) and its stop flag, set under its mutex.
 */

#include <apr_strings.h>
#include <apr_thread_proc.h>
#include <apr_thread_mutex.h>
#include <apr_thread_cond.h>

#include "et_spool.h"
#include "et_guard.h"
#include "et_dispatch.h"

/* While the spool's count is 0, the spool itself is looked at this often
 * (events a previous generation's children spooled, or a crashed writer's
 * count); while it is not, a pass runs at once after each. */
#define ET_SPOOL_LOOK apr_time_from_sec(1)
#define ET_SPOOL_IDLE apr_time_from_msec(100)
/* The outbox still down: the next try after this long. */
#define ET_SPOOL_RETRY apr_time_from_msec(250)
/* A count with nothing in the spool (a writer between its count and its
 * store) is a writer's that died if it lasts this long: given up. */
#define ET_SPOOL_STALE apr_time_from_sec(30)

apr_status_t et_spool_forward(et_outbox_t *spool, et_outbox_t *ob,
                              apr_pool_t *p, int max, et_spool_pass_t *pass)
{
    apr_array_header_t *a;
    et_event_t **evs;
    apr_status_t *each, rv, out = APR_SUCCESS;
    int i, upto = 0, deleted = 0;

    memset(pass, 0, sizeof(*pass));
    if ((rv = et_outbox_oldest(spool, p, max, &a)) != APR_SUCCESS) {
        return rv;
    }
    pass->read = a->nelts;
    if (!a->nelts) {
        return APR_SUCCESS;
    }
    evs = (et_event_t **)a->elts;
    each = apr_palloc(p, a->nelts * sizeof(*each));
    /* as captured, pending (or failed): stored afresh, not leased */
    for (i = 0; i < a->nelts; i++) {
        evs[i]->lease_owner = NULL;
    }
    if ((rv = et_outbox_insert_batch(ob, evs, a->nelts, each))
        != APR_SUCCESS) {
        return rv;
    }
    for (i = 0; i < a->nelts; i++) {
        if (each[i] == APR_SUCCESS) {
            upto = i + 1;
            continue;
        }
        if (et_outbox_writable(ob) != APR_SUCCESS) {
            /* down meanwhile: this one and the rest wait for the next
             * pass (those after it stored already are stored once) */
            out = each[i];
            break;
        }
        if (!pass->dropped++) {
            pass->dropped_txn = evs[i]->txn;
            pass->dropped_error = apr_pstrdup(p, et_outbox_error(ob));
        }
        upto = i + 1;
    }
    if (upto) {
        rv = et_outbox_delete_upto(spool, evs[upto - 1]->rowid, &deleted);
        if (rv != APR_SUCCESS) {
            /* stored in both: the next pass stores them again, in vain */
            pass->dropped = 0;
            return rv;
        }
        pass->moved = upto - pass->dropped;
    }
    return out;
}

struct et_spool_t {
    apr_pool_t *pool;                 /* the thread's (unmanaged) */
    et_spool_conf_t conf;
    et_logger_t log;
    apr_thread_t *thread;
    apr_thread_mutex_t *mutex;        /* guards stop; with cond, the sleep */
    apr_thread_cond_t *cond;
    int stop;
};

/* Sleep @a t unless stopped; non-zero if stopped. */
static int nap(et_spool_t *sp, apr_interval_time_t t)
{
    int stop;

    apr_thread_mutex_lock(sp->mutex);
    if (!sp->stop) {
        apr_thread_cond_timedwait(sp->cond, sp->mutex, t);
    }
    stop = sp->stop;
    apr_thread_mutex_unlock(sp->mutex);
    return stop;
}

/* Open @a spec into *ob (its own pool under @a p) unless open. */
static apr_status_t open_one(et_outbox_t **ob, apr_pool_t **obp,
                             apr_pool_t *p, const char *spec,
                             const char **err)
{
    apr_status_t rv;

    if (*ob) {
        return APR_SUCCESS;
    }
    apr_pool_create(obp, p);
    rv = et_outbox_open(ob, *obp, spec, 0, err);
    if (rv != APR_SUCCESS) {
        *err = apr_pstrdup(p, *err ? *err : "cannot open it");
        apr_pool_destroy(*obp);
        *ob = NULL;
    }
    return rv;
}

static void close_one(et_outbox_t **ob, apr_pool_t *obp)
{
    if (*ob) {
        et_outbox_close(*ob);
        apr_pool_destroy(obp);
        *ob = NULL;
    }
}

static int stopped(et_spool_t *sp)
{
    int stop;

    apr_thread_mutex_lock(sp->mutex);
    stop = sp->stop;
    apr_thread_mutex_unlock(sp->mutex);
    return stop;
}

/* Once per outage of the outbox (it says why). */
static void log_waiting(et_spool_t *sp, apr_pool_t *p, apr_uint32_t count,
                        const char *why)
{
    et_log(&sp->log, ET_LOG_WARNING, p, "ET00103: %u event(s) wait in the "
           "local spool %s: the outbox cannot take them yet (%s); tried "
           "again every %d ms", count, sp->conf.spool + 8, why,
           (int)apr_time_as_msec(ET_SPOOL_RETRY));
}

static void *APR_THREAD_FUNC spool_main(apr_thread_t *t, void *data)
{
    et_spool_t *sp = data;
    const et_spool_conf_t *c = &sp->conf;
    et_guard_t *g = c->guard;
    et_outbox_t *spool = NULL, *ob = NULL;
    apr_pool_t *spp = NULL, *obp = NULL, *iter;
    apr_time_t last_look = 0, empty_since = 0, down_since = 0;
    apr_uint64_t moved_run = 0;
    int max = c->max > 0 ? c->max : 256, spool_bad = 0;

    et_thread_name("et-spool");
    apr_pool_create(&iter, sp->pool);
    for (;;) {
        apr_uint32_t count = et_guard_spool_count(g);
        apr_time_t now = apr_time_now();
        et_spool_pass_t pass;
        const char *err = NULL;
        apr_int64_t total = 0;
        apr_status_t rv;

        apr_pool_clear(iter);
        if (!count && now - last_look < ET_SPOOL_LOOK) {
            if (nap(sp, ET_SPOOL_IDLE)) {
                break;
            }
            continue;
        }
        if (stopped(sp)) {
            break;
        }
        if (open_one(&spool, &spp, sp->pool, c->spool, &err)
            != APR_SUCCESS) {
            if (!spool_bad) {
                spool_bad = 1;
                et_log(&sp->log, ET_LOG_ERR, iter, "ET00101: cannot open "
                       "the local spool %s: %s; its events wait", c->spool + 8,
                       err);
            }
            last_look = now;
            if (nap(sp, ET_SPOOL_LOOK)) {
                break;
            }
            continue;
        }
        spool_bad = 0;
        if (!count) {
            /* nothing counted: anything there nonetheless? */
            last_look = now;
            if (et_outbox_total(spool, &total) == APR_SUCCESS && total > 0
                && et_guard_spool_set(g, 0, (apr_uint32_t)total)) {
                et_log(&sp->log, ET_LOG_ERR, iter, "ET00102: the local "
                       "spool %s holds %" APR_INT64_T_FMT " event(s) that "
                       "were not counted (stored by an earlier generation's "
                       "children); write requests are refused until they "
                       "are forwarded", c->spool + 8, total);
                continue;
            }
            close_one(&ob, obp);      /* no idle outbox connection */
            continue;
        }
        if (open_one(&ob, &obp, sp->pool, c->store, &err) != APR_SUCCESS) {
            if (!down_since) {
                down_since = now;
                log_waiting(sp, iter, count, err);
            }
            if (nap(sp, ET_SPOOL_RETRY)) {
                break;
            }
            continue;
        }
        rv = et_spool_forward(spool, ob, iter, max, &pass);
        if (pass.dropped) {
            et_log(&sp->log, ET_LOG_ERR, iter, "ET00104: the outbox "
                   "refused %d event(s) of the local spool %s while it "
                   "can write (the first: txn=%s: %s); they are deleted "
                   "from the spool and NOT queued", pass.dropped,
                   c->spool + 8, pass.dropped_txn, pass.dropped_error);
            et_guard_lost(g, -1);
        }
        if (pass.moved + pass.dropped) {
            apr_uint32_t left =
                et_guard_spool_forwarded(g, (apr_uint32_t)(pass.moved
                                                           + pass.dropped));

            moved_run += (apr_uint64_t)pass.moved;
            down_since = 0;
            if (c->wake) {
                c->wake(c->wake_baton);
            }
            if (!left) {
                et_log(&sp->log, ET_LOG_NOTICE, iter, "ET00105: the local "
                       "spool %s is empty: %" APR_UINT64_T_FMT " event(s) "
                       "forwarded to the outbox; write requests are "
                       "admitted again", c->spool + 8, moved_run);
                moved_run = 0;
                et_outbox_checkpoint(spool);
            }
        }
        if (rv != APR_SUCCESS) {
            /* which one failed: the outbox (down again) or the spool */
            if (et_outbox_ping(ob) != APR_SUCCESS) {
                if (!down_since) {
                    down_since = now;
                    log_waiting(sp, iter, et_guard_spool_count(g),
                                et_outbox_error(ob));
                }
                close_one(&ob, obp);
            }
            else {
                et_log(&sp->log, ET_LOG_ERR, iter, "ET00106: cannot "
                       "forward the local spool %s: %s", c->spool + 8,
                       et_outbox_error(spool));
                close_one(&spool, spp);
            }
            if (nap(sp, ET_SPOOL_RETRY)) {
                break;
            }
            continue;
        }
        if (!pass.read) {
            /* counted but not there: a writer between its count and its
             * store, or one that died there */
            if (!empty_since) {
                empty_since = now;
            }
            else if (now - empty_since > ET_SPOOL_STALE
                     && et_guard_spool_set(g, count, 0)) {
                et_log(&sp->log, ET_LOG_WARNING, iter, "ET00107: the local "
                       "spool %s is empty but %u event(s) were counted for "
                       "%d s (a writer that died); the count is cleared",
                       c->spool + 8, count,
                       (int)apr_time_sec(ET_SPOOL_STALE));
                empty_since = 0;
            }
            if (nap(sp, apr_time_from_msec(10))) {
                break;
            }
            continue;
        }
        empty_since = 0;
    }
    close_one(&ob, obp);
    close_one(&spool, spp);
    /* a plain return, not apr_thread_exit(): see et_checkpoint.c */
    (void)t;
    return NULL;
}

apr_status_t et_spool_start(et_spool_t **out, apr_pool_t *p,
                            const et_spool_conf_t *conf)
{
    et_spool_t *sp;
    apr_pool_t *tp;
    apr_status_t rv;

    /* unmanaged: nothing in it is shared with another thread */
    apr_pool_create_unmanaged_ex(&tp, NULL, NULL);
    apr_pool_tag(tp, "et_spool");
    sp = apr_pcalloc(tp, sizeof(*sp));
    sp->pool = tp;
    sp->conf = *conf;
    sp->log.fn = conf->log;
    sp->log.baton = conf->log_baton;
    sp->log.level = ET_LOG_INFO;
    if ((rv = apr_thread_mutex_create(&sp->mutex, APR_THREAD_MUTEX_DEFAULT,
                                      tp)) != APR_SUCCESS
        || (rv = apr_thread_cond_create(&sp->cond, tp)) != APR_SUCCESS
        || (rv = apr_thread_create(&sp->thread, NULL, spool_main, sp, p))
           != APR_SUCCESS) {
        apr_pool_destroy(tp);
        return rv;
    }
    *out = sp;
    return APR_SUCCESS;
}

void et_spool_stop(et_spool_t *sp)
{
    apr_status_t trv;

    if (!sp) {
        return;
    }
    apr_thread_mutex_lock(sp->mutex);
    sp->stop = 1;
    apr_thread_cond_signal(sp->cond);
    apr_thread_mutex_unlock(sp->mutex);
    apr_thread_join(&trv, sp->thread);
    apr_pool_destroy(sp->pool);
}
