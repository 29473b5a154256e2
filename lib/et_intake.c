/* Licensed under the Apache License, Version 2.0. */
/*
 * The intake: one writer for every child's captured events, see
 * et_intake.h.
 */

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdlib.h>

#include <apr_strings.h>
#include <apr_poll.h>
#include <apr_thread_proc.h>
#include <apr_reslist.h>
#include <apr_file_io.h>

#include "et_intake.h"
#include "et_outbox.h"
#include "et_committer.h"

/* 2: the trace context and headers of EventTriggerHeader expr= (a child
 * of another version is refused, and stores its events itself) */
#define RECORD_VERSION 2
#define NIL 0xffffffffU
/* an answer's text is a database message: short */
#define ANSWER_MAX 512

/* ------------------------------------------------------------------ */
/* Records                                                            */

static char *put32(char *b, apr_uint32_t v)
{
    b[0] = (char)(v >> 24);
    b[1] = (char)(v >> 16);
    b[2] = (char)(v >> 8);
    b[3] = (char)v;
    return b + 4;
}

static apr_uint32_t get32(const char *b)
{
    const unsigned char *u = (const unsigned char *)b;

    return ((apr_uint32_t)u[0] << 24) | ((apr_uint32_t)u[1] << 16)
           | ((apr_uint32_t)u[2] << 8) | u[3];
}

static char *put64(char *b, apr_int64_t v)
{
    b = put32(b, (apr_uint32_t)((apr_uint64_t)v >> 32));
    return put32(b, (apr_uint32_t)((apr_uint64_t)v & 0xffffffffU));
}

static char *putstr(char *b, const char *s, apr_size_t n)
{
    if (!s) {
        return put32(b, NIL);
    }
    b = put32(b, (apr_uint32_t)n);
    memcpy(b, s, n);
    return b + n;
}

static apr_size_t slen(const char *s)
{
    return s ? strlen(s) : 0;
}

apr_status_t et_intake_encode(apr_pool_t *p, const et_event_t *ev,
                              char **buf, apr_size_t *len)
{
    apr_size_t body_len = ev->body ? ev->body_len : 0;
    apr_size_t n = 4 + 4 + 16 + 10 * 4 + slen(ev->txn) + slen(ev->site)
                   + slen(ev->oid) + slen(ev->url) + slen(ev->content_type)
                   + body_len + slen(ev->error) + slen(ev->traceparent)
                   + slen(ev->tracestate) + slen(ev->headers);
    char *b, *at;

    if (n > ET_INTAKE_MAX_RECORD) {
        return APR_ENOSPC;
    }
    b = at = apr_palloc(p, n);
    at = put32(at, (apr_uint32_t)(n - 4));
    *at++ = RECORD_VERSION;
    *at++ = (char)ev->object;
    *at++ = (char)ev->event;
    *at++ = (char)ev->state;
    at = put64(at, ev->created);
    at = put64(at, ev->due);
    at = putstr(at, ev->txn, slen(ev->txn));
    at = putstr(at, ev->site, slen(ev->site));
    at = putstr(at, ev->oid, slen(ev->oid));
    at = putstr(at, ev->url, slen(ev->url));
    at = putstr(at, ev->content_type, slen(ev->content_type));
    at = putstr(at, ev->body, body_len);
    at = putstr(at, ev->error, slen(ev->error));
    at = putstr(at, ev->traceparent, slen(ev->traceparent));
    at = putstr(at, ev->tracestate, slen(ev->tracestate));
    putstr(at, ev->headers, slen(ev->headers));
    *buf = b;
    *len = n;
    return APR_SUCCESS;
}

typedef struct {
    const char *at;
    apr_size_t left;
    int bad;
} cursor_t;

static apr_uint32_t take32(cursor_t *c)
{
    apr_uint32_t v;

    if (c->left < 4) {
        c->bad = 1;
        return 0;
    }
    v = get32(c->at);
    c->at += 4;
    c->left -= 4;
    return v;
}

static apr_int64_t take64(cursor_t *c)
{
    apr_uint64_t hi = take32(c);

    return (apr_int64_t)((hi << 32) | take32(c));
}

static const char *takestr(cursor_t *c, apr_pool_t *p, apr_size_t *len)
{
    apr_uint32_t n = take32(c);
    const char *s;

    if (c->bad || n == NIL) {
        return NULL;
    }
    if (n > c->left) {
        c->bad = 1;
        return NULL;
    }
    s = apr_pstrmemdup(p, c->at, n);
    c->at += n;
    c->left -= n;
    if (len) {
        *len = n;
    }
    return s;
}

apr_status_t et_intake_decode(apr_pool_t *p, const char *buf, apr_size_t len,
                              et_event_t **out)
{
    cursor_t c = { buf, len, 0 };
    et_event_t *ev;
    unsigned char head[4];

    if (len < 4) {
        return APR_EGENERAL;
    }
    memcpy(head, buf, 4);
    c.at += 4;
    c.left -= 4;
    if (head[0] != RECORD_VERSION || head[1] > ET_OBJ_PACKAGE_KEY
        || head[2] > ET_EV_DELETE || head[3] > ET_ST_FAILED) {
        return APR_EGENERAL;
    }
    ev = apr_pcalloc(p, sizeof(*ev));
    ev->object = (et_object_e)head[1];
    ev->event = (et_event_e)head[2];
    ev->state = (et_state_e)head[3];
    ev->created = take64(&c);
    ev->due = take64(&c);
    ev->txn = takestr(&c, p, NULL);
    ev->site = takestr(&c, p, NULL);
    ev->oid = takestr(&c, p, NULL);
    ev->url = takestr(&c, p, NULL);
    ev->content_type = takestr(&c, p, NULL);
    ev->body = takestr(&c, p, &ev->body_len);
    ev->error = takestr(&c, p, NULL);
    ev->traceparent = takestr(&c, p, NULL);
    ev->tracestate = takestr(&c, p, NULL);
    ev->headers = takestr(&c, p, NULL);
    /* all of it, nothing more, and a txn: the outbox's key for the event */
    if (c.bad || c.left || !ev->txn || !*ev->txn) {
        return APR_EGENERAL;
    }
    *out = ev;
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* Server                                                             */

/* One client connection. Only the intake's thread touches it. */
typedef struct iconn_t {
    apr_socket_t *s;
    apr_pool_t *pool;                 /* the socket's */
    apr_pollfd_t pfd;
    char *buf;                        /* malloc'd: reused, grown */
    apr_size_t cap, have;
    int dead;
    struct iconn_t *prev, *next;
} iconn_t;

typedef struct {
    iconn_t *conn;
    et_event_t *ev;
} item_t;

struct et_intake_t {
    apr_pool_t *pool;                 /* own allocator: only its thread
                                       * makes subpools of it */
    et_intake_conf_t conf;
    apr_socket_t *listener;
    apr_pollset_t *ps;
    apr_thread_t *thread;
    volatile int stop;                /* set by et_intake_stop */
    iconn_t *conns;
    et_writer_t *w;                   /* the outbox connection */
    int ob_failing;                   /* its failure is logged once */
    int accept_failing;               /* likewise */
    int spare;                        /* a descriptor held back (shed),
                                       * -1 if none */
    int poll_failing;                 /* likewise */
    /* The dispatcher that leases fresh events as they are stored, if
     * one is running (et_intake_lessee). The lock is held across a whole
     * commit that uses it, so that a dispatcher that withdraws knows no
     * commit is still handing it events. */
    apr_thread_mutex_t *lessee_lock;
    et_lessee_t lessee;
    int has_lessee;
    et_logger_t log;                  /* over conf.log: read-only */
};

apr_status_t et_intake_listen(apr_socket_t **out, apr_pool_t *p,
                              const char *path, const char **err)
{
    apr_sockaddr_t *sa;
    apr_socket_t *s;
    apr_fileperms_t perms = APR_FPROT_UREAD | APR_FPROT_UWRITE;
    apr_status_t rv;

    apr_file_remove(path, p);
    if ((rv = apr_sockaddr_info_get(&sa, path, APR_UNIX, 0, 0, p))
        != APR_SUCCESS) {
        *err = "bad socket path";
        return rv;
    }
    if ((rv = apr_socket_create(&s, APR_UNIX, SOCK_STREAM, 0, p))
        != APR_SUCCESS) {
        *err = "cannot create a socket";
        return rv;
    }
    if ((rv = apr_socket_bind(s, sa)) != APR_SUCCESS) {
        *err = "cannot bind";
        apr_socket_close(s);
        return rv;
    }
    /* the children run as httpd's User, to whom the caller gives it */
    if ((rv = apr_file_perms_set(path, perms)) != APR_SUCCESS
        || (rv = apr_socket_listen(s, 511)) != APR_SUCCESS) {
        *err = "cannot listen";
        apr_socket_close(s);
        apr_file_remove(path, p);
        return rv;
    }
    *out = s;
    return APR_SUCCESS;
}

static void conn_close(et_intake_t *in, iconn_t *c)
{
    apr_pollset_remove(in->ps, &c->pfd);
    if (c->prev) {
        c->prev->next = c->next;
    }
    else {
        in->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    apr_socket_close(c->s);
    free(c->buf);
    apr_pool_destroy(c->pool);
}

/*
 * Out of descriptors: the listener stays readable and children that
 * connected wait in its backlog for an answer that would not come (up to
 * ET_INTAKE_WAIT each). Give up the spare descriptor, accept and close
 * what waits (those children hear EOF and store their events themselves
 * at once), then take the spare back.
 */
static apr_status_t close_spare(void *data)
{
    et_intake_t *in = data;

    if (in->spare >= 0) {
        close(in->spare);
        in->spare = -1;
    }
    return APR_SUCCESS;
}

static void shed(et_intake_t *in)
{
    apr_pool_t *tp;

    if (in->spare < 0) {
        /* lost to another thread last time: take one back if one is free */
        in->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
        apr_sleep(apr_time_from_msec(10));    /* do not spin meanwhile */
        return;
    }
    close(in->spare);
    in->spare = -1;
    apr_pool_create(&tp, in->pool);
    for (;;) {
        apr_socket_t *s;

        if (apr_socket_accept(&s, in->listener, tp) != APR_SUCCESS) {
            break;
        }
        apr_socket_close(s);
        apr_pool_clear(tp);
    }
    apr_pool_destroy(tp);
    in->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void accept_all(et_intake_t *in)
{
    for (;;) {
        apr_pool_t *cp;
        apr_socket_t *s;
        iconn_t *c;
        apr_status_t rv;

        apr_pool_create(&cp, in->pool);
        rv = apr_socket_accept(&s, in->listener, cp);
        if (rv != APR_SUCCESS) {
            apr_pool_destroy(cp);
            if (!APR_STATUS_IS_EAGAIN(rv) && !APR_STATUS_IS_EINTR(rv)) {
                /* logged once until an accept succeeds */
                if (!in->accept_failing) {
                    in->accept_failing = 1;
                    et_log(&in->log, ET_LOG_WARNING, NULL,
                           "ET01028: intake cannot accept "
                           "a connection: %pm; the children store their "
                           "events themselves meanwhile", &rv);
                }
                if (rv == APR_FROM_OS_ERROR(EMFILE)
                    || rv == APR_FROM_OS_ERROR(ENFILE)) {
                    shed(in);
                }
                else {
                    apr_sleep(apr_time_from_msec(10));   /* do not spin */
                }
            }
            return;
        }
        in->accept_failing = 0;
        c = apr_pcalloc(cp, sizeof(*c));
        c->s = s;
        c->pool = cp;
        apr_socket_timeout_set(s, 0);
        c->pfd.p = cp;
        c->pfd.desc_type = APR_POLL_SOCKET;
        c->pfd.reqevents = APR_POLLIN;
        c->pfd.desc.s = s;
        c->pfd.client_data = c;
        if ((rv = apr_pollset_add(in->ps, &c->pfd)) != APR_SUCCESS) {
            /* the child stores its event itself */
            et_log(&in->log, ET_LOG_WARNING, NULL,
                   "ET01035: intake cannot watch a "
                   "connection: %pm", &rv);
            apr_socket_close(s);
            apr_pool_destroy(cp);
            continue;
        }
        c->next = in->conns;
        if (in->conns) {
            in->conns->prev = c;
        }
        in->conns = c;
    }
}

/* Read what is there; queue each whole record (decoded into @a bp). */
static void read_conn(et_intake_t *in, iconn_t *c, apr_array_header_t *items,
                      apr_pool_t *bp)
{
    apr_size_t n, used = 0;
    apr_status_t rv;

    if (c->cap - c->have < 4096) {
        apr_size_t cap = c->cap ? c->cap * 2 : 16384;
        char *nb = realloc(c->buf, cap);
        if (!nb) {
            c->dead = 1;
            return;
        }
        c->buf = nb;
        c->cap = cap;
    }
    n = c->cap - c->have;
    rv = apr_socket_recv(c->s, c->buf + c->have, &n);
    c->have += n;
    if (rv != APR_SUCCESS && !APR_STATUS_IS_EAGAIN(rv)) {
        /* whole records already read are still stored: their senders
         * insert them again and the outbox keeps one */
        c->dead = 1;
    }

    while (c->have - used >= 4) {
        apr_uint32_t len = get32(c->buf + used);
        item_t *it;
        et_event_t *ev;

        if (len < 4 || len > ET_INTAKE_MAX_RECORD) {
            et_log(&in->log, ET_LOG_ERR, NULL,
                   "ET01029: intake got a malformed record "
                   "(length %u); connection closed, its sender stores the "
                   "event itself", (unsigned)len);
            c->dead = 1;
            break;
        }
        if (c->have - used - 4 < len) {
            if (c->cap < (apr_size_t)len + 4) {
                char *nb = realloc(c->buf, (apr_size_t)len + 4);
                if (!nb) {
                    c->dead = 1;
                    break;
                }
                c->buf = nb;
                c->cap = (apr_size_t)len + 4;
            }
            break;
        }
        if (et_intake_decode(bp, c->buf + used + 4, len, &ev)
            != APR_SUCCESS) {
            et_log(&in->log, ET_LOG_ERR, NULL,
                   "ET01037: intake got a malformed record "
                   "(%u bytes); connection closed, its sender stores the "
                   "event itself", (unsigned)len);
            c->dead = 1;
            break;
        }
        it = apr_array_push(items);
        it->conn = c;
        it->ev = ev;
        used += 4 + len;
    }
    if (used) {
        memmove(c->buf, c->buf + used, c->have - used);
        c->have -= used;
    }
    /* a large record's buffer is not kept for the small ones after it:
     * there is one per request thread of every child */
    if (!c->have && c->cap > 65536) {
        free(c->buf);
        c->buf = NULL;
        c->cap = 0;
    }
}

static void answer(iconn_t *c, const char *err)
{
    char b[4 + ANSWER_MAX];
    apr_size_t len = err ? strlen(err) : 0, n;

    if (c->dead) {
        return;
    }
    if (len > ANSWER_MAX) {
        len = ANSWER_MAX;
    }
    put32(b, (apr_uint32_t)len);
    if (len) {
        memcpy(b + 4, err, len);
    }
    n = len + 4;
    /* the sender is waiting for it: its socket buffer has room */
    if (apr_socket_send(c->s, b, &n) != APR_SUCCESS || n != len + 4) {
        c->dead = 1;
    }
}

/* Store @a n events in one transaction and answer each sender. With a
 * dispatcher there, its fresh events are stored leased to it and handed
 * to its calls at once (et_lessee_t); the claim loop is woken only for
 * the events it must claim itself. */
static void commit(et_intake_t *in, item_t *items, int n, apr_pool_t *bp)
{
    et_event_t **evs = apr_palloc(bp, n * sizeof(*evs));
    apr_status_t *each = apr_palloc(bp, n * sizeof(*each));
    int *lease = apr_pcalloc(bp, n * sizeof(*lease));
    et_event_t **rev = NULL;          /* the reserved ones, for settle */
    apr_status_t *rst = NULL;
    const et_lessee_t *l;
    char err[ANSWER_MAX];
    apr_status_t rv;
    int i, k = 0, stored = 0, reserved = 0, leased = 0, wake = 0;

    for (i = 0; i < n; i++) {
        evs[i] = items[i].ev;
    }
    apr_thread_mutex_lock(in->lessee_lock);
    l = in->has_lessee ? &in->lessee : NULL;
    for (i = 0; l && i < n; i++) {
        lease[i] = l->reserve(l->baton, evs[i]);
        reserved += lease[i] == ET_LEASE_TAKEN;
    }
    if (reserved) {
        rev = apr_palloc(bp, reserved * sizeof(*rev));
        rst = apr_palloc(bp, reserved * sizeof(*rst));
    }
    rv = et_writer_enter(in->w, err, sizeof(err));
    if (rv == APR_SUCCESS) {
        rv = et_writer_store(in->w, evs, n, each, err, sizeof(err));
    }
    if (rv != APR_SUCCESS && !in->ob_failing) {
        in->ob_failing = 1;
        et_log(&in->log, ET_LOG_ERR, NULL,
               "ET01030: intake cannot store events: %s; "
               "the children store them themselves until it can", err);
    }
    for (i = 0; i < n; i++) {
        if (rv == APR_SUCCESS && each[i] == APR_SUCCESS) {
            answer(items[i].conn, NULL);
            stored++;
            /* what is stored but not leased is the claim loop's, unless
             * its site is paused (the claim loop looks at those itself) */
            if (lease[i] == ET_LEASE_TAKEN && evs[i]->lease_owner) {
                leased++;
            }
            else if (lease[i] != ET_LEASE_PAUSED) {
                wake = 1;
            }
        }
        else {
            answer(items[i].conn, err);
            each[i] = rv != APR_SUCCESS ? rv : each[i];
        }
        if (lease[i] == ET_LEASE_TAKEN) {
            rev[k] = evs[i];
            rst[k++] = each[i];
        }
    }
    if (reserved) {
        l->settle(l->baton, rev, rst, reserved);
    }
    apr_thread_mutex_unlock(in->lessee_lock);

    if (rv == APR_SUCCESS && in->ob_failing) {
        in->ob_failing = 0;
        et_log(&in->log, ET_LOG_NOTICE, NULL,
               "ET01031: intake stores events again");
    }
    if (stored) {
        et_log(&in->log, ET_LOG_DEBUG, NULL,
               "ET01039: intake stored %d event(s), %d of "
               "them leased to the dispatcher's calls at once", stored,
               leased);
    }
    if (wake && in->conf.wake) {
        in->conf.wake(in->conf.wake_baton);
    }
}

void et_intake_lessee(et_intake_t *in, const et_lessee_t *l)
{
    if (!in) {
        return;
    }
    apr_thread_mutex_lock(in->lessee_lock);
    if (l) {
        in->lessee = *l;
    }
    in->has_lessee = l != NULL;
    apr_thread_mutex_unlock(in->lessee_lock);
}

static void *APR_THREAD_FUNC intake_main(apr_thread_t *t, void *data)
{
    et_intake_t *in = data;
    apr_array_header_t *items;
    apr_pool_t *bp;
    int max = in->conf.max > 0 ? in->conf.max : 256;

    et_thread_name("et-intake");
    apr_pool_create(&bp, in->pool);
    while (!in->stop) {
        const apr_pollfd_t *descs;
        apr_int32_t num = 0, i;
        apr_status_t rv;
        iconn_t *c, *next;

        rv = apr_pollset_poll(in->ps, -1, &num, &descs);
        if (rv != APR_SUCCESS) {
            if (!APR_STATUS_IS_EINTR(rv) && !APR_STATUS_IS_TIMEUP(rv)) {
                /* once until it polls again; retried every 10 ms */
                if (!in->poll_failing) {
                    in->poll_failing = 1;
                    et_log(&in->log, ET_LOG_ERR, NULL,
                           "ET01036: intake cannot poll: %pm; "
                           "the children store their events themselves "
                           "meanwhile", &rv);
                }
                apr_sleep(apr_time_from_msec(10));
            }
            continue;
        }
        in->poll_failing = 0;
        items = apr_array_make(bp, 64, sizeof(item_t));
        for (i = 0; i < num; i++) {
            if (descs[i].client_data == NULL) {
                accept_all(in);
            }
            else {
                read_conn(in, descs[i].client_data, items, bp);
            }
        }
        /* all that came in while the last batch was committed: one group */
        for (i = 0; i < items->nelts; i += max) {
            int n = items->nelts - i < max ? items->nelts - i : max;
            commit(in, (item_t *)items->elts + i, n, bp);
        }
        for (c = in->conns; c; c = next) {
            next = c->next;
            if (c->dead) {
                conn_close(in, c);
            }
        }
        apr_pool_clear(bp);
    }
    /* a plain return, not apr_thread_exit(): see the checkpointer in
     * et_checkpoint.c (ASan and pthread_exit's unwinding) */
    (void)t;
    return NULL;
}

apr_status_t et_intake_start(et_intake_t **out, apr_pool_t *p,
                             apr_socket_t *listener,
                             const et_intake_conf_t *conf)
{
    apr_allocator_t *alloc;
    apr_pool_t *ip;
    apr_pollfd_t pfd;
    et_intake_t *in;
    apr_status_t rv;

    if ((rv = apr_allocator_create(&alloc)) != APR_SUCCESS) {
        return rv;
    }
    apr_pool_create_ex(&ip, p, NULL, alloc);
    apr_allocator_owner_set(alloc, ip);
    apr_pool_tag(ip, "et_intake");
    in = apr_pcalloc(ip, sizeof(*in));
    in->pool = ip;
    in->conf = *conf;
    in->log.fn = conf->log;
    in->log.baton = conf->log_baton;
    /* 0: what it always logged, not ET01039 (debug) */
    in->log.level = conf->log_level ? conf->log_level : ET_LOG_INFO;
    in->listener = listener;
    in->w = et_writer_create(ip, conf->store, conf->lock);
    et_writer_spool(in->w, conf->spool, conf->guard, conf->log,
                    conf->log_baton);
    /* see shed(); -1: only the pause, until one is free */
    in->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    apr_pool_cleanup_register(ip, in, close_spare, apr_pool_cleanup_null);
    apr_socket_timeout_set(listener, 0);
    rv = apr_pollset_create(&in->ps, 4096, ip, APR_POLLSET_WAKEABLE);
    if (rv == APR_SUCCESS) {
        rv = apr_thread_mutex_create(&in->lessee_lock,
                                     APR_THREAD_MUTEX_DEFAULT, ip);
    }
    if (rv != APR_SUCCESS) {
        apr_pool_destroy(ip);
        return rv;
    }
    memset(&pfd, 0, sizeof(pfd));
    pfd.p = ip;
    pfd.desc_type = APR_POLL_SOCKET;
    pfd.reqevents = APR_POLLIN;
    pfd.desc.s = listener;
    pfd.client_data = NULL;           /* NULL: the listener */
    if ((rv = apr_pollset_add(in->ps, &pfd)) != APR_SUCCESS
        || (rv = apr_thread_create(&in->thread, NULL, intake_main, in, ip))
           != APR_SUCCESS) {
        apr_pool_destroy(ip);
        return rv;
    }
    *out = in;
    return APR_SUCCESS;
}

void et_intake_stop(et_intake_t *in)
{
    apr_status_t trv;

    if (!in) {
        return;
    }
    in->stop = 1;
    apr_pollset_wakeup(in->ps);
    apr_thread_join(&trv, in->thread);
    while (in->conns) {
        conn_close(in, in->conns);
    }
    et_writer_close(in->w);
    apr_pool_destroy(in->pool);       /* closes the spare descriptor too */
}

/* ------------------------------------------------------------------ */
/* Client                                                             */

typedef struct {
    apr_socket_t *s;
    apr_pool_t *pool;                 /* the socket's own */
    int used;                         /* calls made on it */
} cconn_t;

struct et_intake_client_t {
    apr_sockaddr_t *sa;               /* read-only once made */
    apr_interval_time_t wait;
    apr_reslist_t *conns;
};

static apr_status_t cconn_make(void **res, void *params, apr_pool_t *pool)
{
    et_intake_client_t *c = params;
    apr_pool_t *sp;
    cconn_t *cc;
    apr_status_t rv;

    apr_pool_create(&sp, pool);
    cc = apr_pcalloc(sp, sizeof(*cc));
    cc->pool = sp;
    rv = apr_socket_create(&cc->s, APR_UNIX, SOCK_STREAM, 0, sp);
    if (rv == APR_SUCCESS) {
        apr_socket_timeout_set(cc->s, c->wait);
        rv = apr_socket_connect(cc->s, c->sa);
    }
    if (rv != APR_SUCCESS) {
        apr_pool_destroy(sp);
        return rv;
    }
    *res = cc;
    return APR_SUCCESS;
}

static apr_status_t cconn_drop(void *res, void *params, apr_pool_t *pool)
{
    cconn_t *cc = res;

    apr_socket_close(cc->s);
    apr_pool_destroy(cc->pool);
    return APR_SUCCESS;
}

/* The connections' pools are subpools of the reslist's: close them
 * through the reslist before the pool destroys its subpools. */
static apr_status_t client_cleanup(void *data)
{
    et_intake_client_t *c = data;

    if (c->conns) {
        apr_reslist_destroy(c->conns);
        c->conns = NULL;
    }
    return APR_SUCCESS;
}

apr_status_t et_intake_client_create(et_intake_client_t **out, apr_pool_t *p,
                                     const char *path, int max,
                                     apr_interval_time_t wait)
{
    et_intake_client_t *c = apr_pcalloc(p, sizeof(*c));
    apr_pool_t *rp;
    apr_status_t rv;

    c->wait = wait;
    if ((rv = apr_sockaddr_info_get(&c->sa, path, APR_UNIX, 0, 0, p))
        != APR_SUCCESS) {
        return rv;
    }
    if (max < 1) {
        max = 1;
    }
    /* one connection per calling thread at most; kept while they work.
     * The reslist allocates from its pool under its own lock only, so it
     * gets a pool no one else allocates from (@a p may be shared). */
    apr_pool_create(&rp, p);
    rv = apr_reslist_create(&c->conns, 0, max, max, 0, cconn_make,
                            cconn_drop, c, rp);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    apr_reslist_timeout_set(c->conns, wait);
    apr_pool_pre_cleanup_register(p, c, client_cleanup);
    *out = c;
    return APR_SUCCESS;
}

static apr_status_t send_all(apr_socket_t *s, const char *b, apr_size_t len)
{
    while (len) {
        apr_size_t n = len;
        apr_status_t rv = apr_socket_send(s, b, &n);

        if (rv != APR_SUCCESS) {
            return rv;
        }
        b += n;
        len -= n;
    }
    return APR_SUCCESS;
}

static apr_status_t recv_all(apr_socket_t *s, char *b, apr_size_t len)
{
    while (len) {
        apr_size_t n = len;
        apr_status_t rv = apr_socket_recv(s, b, &n);

        b += n;
        len -= n;
        if (rv != APR_SUCCESS && len) {
            return rv;
        }
    }
    return APR_SUCCESS;
}

/* One call on one connection: *msg is NULL if stored, else the intake's
 * reason. A return other than APR_SUCCESS: the connection is unusable. */
static apr_status_t call(cconn_t *cc, const char *rec, apr_size_t len,
                         apr_pool_t *p, const char **msg)
{
    char head[4], *text;
    apr_uint32_t n;
    apr_status_t rv;

    *msg = NULL;
    if ((rv = send_all(cc->s, rec, len)) != APR_SUCCESS
        || (rv = recv_all(cc->s, head, 4)) != APR_SUCCESS) {
        return rv;
    }
    n = get32(head);
    if (!n) {
        return APR_SUCCESS;
    }
    if (n > ANSWER_MAX) {
        return APR_EGENERAL;
    }
    text = apr_palloc(p, n + 1);
    if ((rv = recv_all(cc->s, text, n)) != APR_SUCCESS) {
        return rv;
    }
    text[n] = '\0';
    *msg = text;
    return APR_SUCCESS;
}

apr_status_t et_intake_store(et_intake_client_t *c, const et_event_t *ev,
                             apr_pool_t *p, const char **err)
{
    char *rec;
    apr_size_t len;
    apr_status_t rv;
    int tries;

    *err = NULL;
    if ((rv = et_intake_encode(p, ev, &rec, &len)) != APR_SUCCESS) {
        *err = "the event is too large for the intake";
        return rv;
    }
    /* A kept connection may have outlived its intake (a restarted
     * dispatcher): one more try on a new one, unless it timed out. */
    for (tries = 0; tries < 2; tries++) {
        void *res;
        cconn_t *cc;
        const char *msg;
        int reused;

        if ((rv = apr_reslist_acquire(c->conns, &res)) != APR_SUCCESS) {
            *err = apr_psprintf(p, "cannot reach the dispatcher's intake "
                                "(%pm)", &rv);
            return rv;
        }
        cc = res;
        reused = cc->used++ > 0;
        rv = call(cc, rec, len, p, &msg);
        if (rv == APR_SUCCESS) {
            apr_reslist_release(c->conns, cc);
            if (msg) {
                *err = msg;
                return APR_EGENERAL;
            }
            return APR_SUCCESS;
        }
        apr_reslist_invalidate(c->conns, cc);
        if (!reused || APR_STATUS_IS_TIMEUP(rv)) {
            break;
        }
    }
    *err = APR_STATUS_IS_TIMEUP(rv)
           ? "the dispatcher's intake did not answer in time"
           : apr_psprintf(p, "the dispatcher's intake went away (%pm)", &rv);
    return rv;
}
