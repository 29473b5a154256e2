/* Licensed under the Apache License, Version 2.0. */
/*
 * The dispatcher process: exactly one per httpd instance whatever the MPM
 * and however many children, forked from the parent in post_config as
 * mod_cgid forks its daemon. The parent restarts it if it dies (other-child
 * maintenance) and stops it when the configuration pool goes away (restart,
 * graceful restart, stop). It runs as httpd's User.
 *
 * A dispatcher that dies mid-call leaves leases that expire; its successor
 * takes the events over. Nothing is lost.
 */

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_main.h"
#include "ap_listen.h"
#include "ap_mpm.h"
#include "mpm_common.h"

#include <apr_signal.h>
#include <apr_thread_proc.h>
#include <apr_strings.h>

#if APR_HAVE_UNISTD_H
#include <unistd.h>
#endif
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <signal.h>
#include <sys/resource.h>

#include "mod_eventtrigger.h"
#include "et_dispatch.h"
#include "et_http.h"
#include "et_spool.h"

/* Parent side; touched only by the parent's single thread. */
static apr_pool_t *daemon_pconf;
static server_rec *daemon_server;
static apr_time_t daemon_started;
/* the dispatcher forked last has not been reaped yet: its pid is still
 * its own, and may be signalled (parent process, one thread) */
static int daemon_running;

/* Dispatcher side: set by the signal handler, read by the claim loop. */
static volatile int daemon_should_exit;

static void daemon_signal(int sig)
{
    daemon_should_exit = 1;
}

static void daemon_log(void *baton, int level, const char *msg)
{
    server_rec *s = baton;

    ap_log_error(APLOG_MARK, level, 0, s, "%s", msg);
}

static void intake_wake(void *baton)
{
    et_wake_dispatcher();
}

/* Bind the intake's socket while still root (the runtime directory is
 * root's), then give it to httpd's User, as mod_cgid does with its own.
 * NULL: no intake; the children store their events themselves. */
static apr_socket_t *intake_listen(apr_pool_t *p, server_rec *s)
{
    apr_socket_t *l = NULL;
    const char *err = NULL;
    apr_status_t rv;

    if (!et_g.intake_path) {
        return NULL;
    }
    rv = et_intake_listen(&l, p, et_g.intake_path, &err);
    if (rv == APR_SUCCESS
        && (rv = et_give_to_user(p, et_g.intake_path, 1)) != APR_SUCCESS) {
        err = "cannot give it to httpd's User";
        apr_socket_close(l);
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s,
                     "ET01027: dispatcher cannot listen on %s (%s); the "
                     "children store their events themselves",
                     et_g.intake_path, err ? err : "unknown error");
        return NULL;
    }
    return l;
}

/* The intake on its own thread; NULL if it cannot start (logged). */
static et_intake_t *intake_start(apr_pool_t *p, server_rec *s,
                                 apr_socket_t *listener)
{
    et_intake_conf_t ic;
    et_intake_t *intake = NULL;
    apr_status_t rv;

    memset(&ic, 0, sizeof(ic));
    ic.store = et_g.store;
    ic.lock = et_g.lock;
    ic.max = 256;
    ic.log = daemon_log;
    ic.log_baton = s;
    ic.log_level = ap_get_server_module_loglevel(s, APLOG_MODULE_INDEX);
    ic.wake = intake_wake;
    ic.spool = et_g.spool;
    ic.guard = et_guard_mem();
    rv = et_intake_start(&intake, p, listener, &ic);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s,
                     "ET01038: dispatcher cannot start its intake; the "
                     "children store their events themselves");
        apr_socket_close(listener);
        apr_file_remove(et_g.intake_path, p);
        return NULL;
    }
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                 "ET01032: dispatcher stores the children's events (intake "
                 "%s)", et_g.intake_path);
    return intake;
}

/* The local spool's forwarder on its own thread (NULL: no spool, or it
 * cannot start: logged); it runs as long as this process, the pause
 * after a failed dispatcher included. */
static et_spool_t *spool_start(apr_pool_t *p, server_rec *s)
{
    et_spool_conf_t sc;
    et_spool_t *sp = NULL;
    apr_status_t rv;

    if (!et_g.spool || !et_guard_mem()) {
        return NULL;
    }
    memset(&sc, 0, sizeof(sc));
    sc.spool = et_g.spool;
    sc.store = et_g.store;
    sc.guard = et_guard_mem();
    sc.max = 256;
    sc.log = daemon_log;
    sc.log_baton = s;
    sc.wake = intake_wake;
    rv = et_spool_start(&sp, p, &sc);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s,
                     "ET00114: dispatcher cannot start the local spool's "
                     "forwarder; events that wait there are forwarded "
                     "after its restart");
        return NULL;
    }
    return sp;
}

static void offer_to_intake(void *baton, const et_lessee_t *lessee)
{
    et_intake_lessee(baton, lessee);
}

/* The dispatcher cannot start (its caller said why): exit after a pause,
 * since the parent restarts it at once and what failed will most likely
 * fail again (no fork loop). SIGTERM ends the pause. */
static void daemon_give_up(void)
{
    if (!daemon_should_exit) {
        apr_sleep(apr_time_from_sec(10));
    }
    _exit(1);
}

/* Runs in the forked child; never returns. */
static void daemon_main(apr_pool_t *pconf, server_rec *s, pid_t parent)
{
    et_srv_conf_t *mc = et_srv_conf(s);
    et_dispatch_conf_t conf;
    apr_socket_t *listener;
    et_intake_t *intake = NULL;
    et_spool_t *spool;
    server_rec *vs;
    apr_pool_t *p;
    apr_status_t rv;

    apr_signal(SIGTERM, daemon_signal);
    apr_signal(SIGHUP, daemon_signal);
    apr_signal(SIGINT, daemon_signal);
    /* graceful signals are for the MPM's children; the parent stops us */
    apr_signal(SIGUSR1, SIG_IGN);
#ifdef SIGWINCH
    apr_signal(SIGWINCH, SIG_IGN);
#endif
    apr_signal(SIGPIPE, SIG_IGN);
    apr_signal(SIGCHLD, SIG_DFL);
#ifdef __linux__
    /* a parent killed with SIGKILL cannot stop us: let the kernel do it */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
#endif
    if (getppid() != parent) {
        _exit(0);
    }

    /* the listeners are the children's; a lingering dispatcher must not
     * keep httpd's ports */
    ap_close_listeners();

    apr_pool_create(&p, pconf);
    apr_pool_tag(p, "et_dispatcher");
    {
        /* every MPM thread of every child may keep a connection to the
         * intake: as many descriptors as the hard limit allows (the
         * intake sheds connections when it runs out anyway) */
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    listener = intake_listen(p, s);
    if (ap_run_drop_privileges(p, s)) {
        ap_log_error(APLOG_MARK, APLOG_ALERT, 0, s,
                     "ET00040: dispatcher cannot switch to httpd's User; "
                     "it restarts in 10s");
        daemon_give_up();
    }
    if (et_g.lock
        && (rv = apr_global_mutex_child_init(&et_g.lock,
                                             apr_global_mutex_lockfile(et_g.lock),
                                             p)) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ALERT, rv, s,
                     "ET00046: dispatcher cannot attach the outbox lock; it "
                     "restarts in 10s");
        daemon_give_up();
    }
    if (et_http_curl_global_init() != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ALERT, 0, s,
                     "ET00041: dispatcher cannot initialise libcurl; it "
                     "restarts in 10s");
        daemon_give_up();
    }

    memset(&conf, 0, sizeof(conf));
    conf.store = et_g.store;
    conf.workers = mc->workers;
    conf.lease = mc->lease;
    conf.poll = mc->poll;
    conf.lookup = et_site_lookup;
    conf.lookup_baton = s;
    conf.log = daemon_log;
    conf.log_baton = s;
    /* the per-event lines are not formatted when LogLevel drops them */
    conf.log_level = ap_get_server_module_loglevel(s, APLOG_MODULE_INDEX);
    conf.wakeup = et_g.wake_r;
    conf.keep_delivered = mc->keep_delivered;
    conf.keep_dead = mc->keep_dead;
    conf.stop = &daemon_should_exit;
    conf.lock = et_g.lock;
    conf.space = et_guard_space();
    conf.sites = apr_array_make(p, 8, sizeof(const char *));
    for (vs = s; vs; vs = vs->next) {
        et_srv_conf_t *c = et_srv_conf(vs);
        if (c->site.endpoint) {
            APR_ARRAY_PUSH(conf.sites, const char *) = c->site.name;
        }
    }

    spool = spool_start(p, s);
    if (listener) {
        intake = intake_start(p, s, listener);
    }
    if (intake) {
        /* fresh events are leased to the dispatcher as they are stored */
        conf.offer = offer_to_intake;
        conf.offer_baton = intake;
    }
    rv = et_dispatch_run(p, &conf);
    /* unanswered children store their events themselves */
    et_intake_stop(intake);
    if (rv != APR_SUCCESS) {
        /* The parent restarts a dead dispatcher: wait first so that a
         * broken outbox does not become a fork loop. */
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s,
                     "ET00042: dispatcher failed; it restarts in 10s");
        /* the spool's forwarder goes on meanwhile: it moves what waits
         * there as soon as the outbox answers again */
        apr_sleep(apr_time_from_sec(10));
        et_spool_stop(spool);
        _exit(1);
    }
    et_spool_stop(spool);
    /* Close our own outbox and handles, then _exit: pconf belongs to the
     * parent's image and its cleanups must not run here. */
    apr_pool_destroy(p);
    _exit(0);
}

static int daemon_fork(apr_pool_t *pconf, server_rec *s, apr_proc_t *proc);

static void daemon_maint(int reason, void *data, apr_wait_t status)
{
    apr_proc_t *proc = data;
    int mpm_state;

    switch (reason) {
    case APR_OC_REASON_DEATH:
    case APR_OC_REASON_LOST:
        /* reaped: its pid may be another process's by now, so the
         * UNREGISTER that unregistering calls back with must not kill it */
        daemon_running = 0;
        apr_proc_other_child_unregister(data);
        if (ap_mpm_query(AP_MPMQ_MPM_STATE, &mpm_state) == APR_SUCCESS
            && mpm_state != AP_MPMQ_STOPPING) {
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, daemon_server,
                         "ET00043: dispatcher (pid %" APR_PID_T_FMT ") "
                         "died after %" APR_TIME_T_FMT "s, restarting",
                         proc->pid,
                         apr_time_sec(apr_time_now() - daemon_started));
            daemon_fork(daemon_pconf, daemon_server, proc);
        }
        break;
    case APR_OC_REASON_RESTART:
        /* the server restarts; pconf's cleanup stops the daemon */
        apr_proc_other_child_unregister(data);
        break;
    case APR_OC_REASON_UNREGISTER:
        /* pconf is being cleaned up: stop this generation's dispatcher */
        if (daemon_running && proc->pid > 0) {
            kill(proc->pid, SIGTERM);
        }
        break;
    }
}

static int daemon_fork(apr_pool_t *pconf, server_rec *s, apr_proc_t *proc)
{
    pid_t parent = getpid();
    apr_status_t rv;

    rv = apr_proc_fork(proc, pconf);
    if (rv == APR_INCHILD) {
        daemon_main(pconf, s, parent);
        _exit(0);                     /* not reached */
    }
    if (rv != APR_INPARENT) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s,
                     "ET00044: cannot fork the dispatcher");
        return DECLINED;
    }
    daemon_started = apr_time_now();
    daemon_running = 1;
    /* Stopped (SIGTERM, then SIGKILL after 3s) when pconf is cleaned up. */
    apr_pool_note_subprocess(pconf, proc, APR_KILL_AFTER_TIMEOUT);
    apr_proc_other_child_register(proc, daemon_maint, proc, NULL, pconf);
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                 "ET00045: dispatcher started (pid %" APR_PID_T_FMT ")",
                 proc->pid);
    return OK;
}

int et_daemon_start(apr_pool_t *pconf, server_rec *s)
{
    apr_proc_t *proc = apr_pcalloc(pconf, sizeof(*proc));

    daemon_pconf = pconf;
    daemon_server = s;
    return daemon_fork(pconf, s, proc) == OK ? OK : HTTP_INTERNAL_SERVER_ERROR;
}
