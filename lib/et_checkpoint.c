/* Licensed under the Apache License, Version 2.0. */
/*
 * The dispatcher's checkpointer thread: it copies the SQLite write-ahead
 * log into the database file every 100 ms, so that no commit (a
 * request's, a round's) has to (et_outbox_checkpoint). On PostgreSQL it
 * only sleeps.
 *
 * Thread safety: runs on a thread of its own, with its own connection and
 * an unmanaged pool; it takes no lock and reads nothing of the dispatcher
 * but d->conf and d->log (read-only), the stop flag and the reserve file
 * (etd_may_write: a stat).
 */

#include "et_dispatch_int.h"

/* How often the checkpointer copies the SQLite log into the file. */
#define ET_CHECKPOINT_EVERY apr_time_from_msec(100)

void *APR_THREAD_FUNC etd_checkpointer(apr_thread_t *thd, void *data)
{
    const dispatcher_t *d = data;
    const et_dispatch_conf_t *conf = d->conf;
    apr_pool_t *p;
    et_outbox_t *ob = NULL;
    const char *err = NULL;
    int complained = 0;

    et_thread_name("et-checkpoint");

    /* its own allocator: nothing here is shared with the other threads */
    apr_pool_create_unmanaged_ex(&p, NULL, NULL);
    if (et_outbox_open(&ob, p, conf->store, 0, &err) != APR_SUCCESS) {
        et_log(&d->log, ET_LOG_WARNING, p,
               "ET01021: the checkpointer cannot open the "
               "outbox (%s); commits will checkpoint the log "
               "themselves", err ? err : "unknown error");
        ob = NULL;
    }
    while (ob && !*conf->stop) {
        apr_sleep(ET_CHECKPOINT_EVERY);
        /* The reserve given up (et_guard.h): a checkpoint would grow the
         * database file into the room kept for admitted events, whose
         * commits then could not grow the log (t/root/store_full.sh lost
         * events). Held back until it is held again, as the claiming
         * thread is (et_dispatch.c, room_to_write). */
        if (!etd_may_write(d)) {
            continue;
        }
        if (et_outbox_checkpoint(ob) != APR_SUCCESS && !complained) {
            et_log(&d->log, ET_LOG_WARNING, p,
                   "ET01022: cannot checkpoint the outbox: %s",
                   et_outbox_error(ob));
            complained = 1;           /* once: it is retried each time */
        }
    }
    apr_pool_destroy(p);              /* closes the connection */
    /* a plain return, not apr_thread_exit(): pthread_exit's unwinding
     * leaves ASan's stack poisoning behind and it reports the thread's
     * own teardown */
    (void)thd;
    return NULL;
}
