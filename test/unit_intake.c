/* Licensed under the Apache License, Version 2.0. */
/*
 * unit_intake.c: the intake (et_intake.c): its records, and a real server
 * thread on a Unix socket storing into a real SQLite outbox (and a real
 * PostgreSQL one when ET_TEST_PGSQL is set) for clients on several
 * threads.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <apr_strings.h>
#include <apr_file_io.h>
#include <apr_thread_proc.h>
#include <apr_thread_mutex.h>
#include <apr_atomic.h>

#include "et_intake.h"
#include "et_outbox.h"
#include "et_url.h"
#include "unit_tests.h"

static char dir[64];
static const char *spec, *sock;
static et_outbox_t *ob;
static et_intake_t *in;
static volatile apr_uint32_t wakes;
static apr_thread_mutex_t *log_mu;
static char logged[4096];

static void tlog(void *baton, int level, const char *msg)
{
    apr_thread_mutex_lock(log_mu);
    apr_cpystrn(logged + strlen(logged), msg, sizeof(logged) - strlen(logged));
    apr_thread_mutex_unlock(log_mu);
}

static int has_logged(const char *s)
{
    int found;

    apr_thread_mutex_lock(log_mu);
    found = strstr(logged, s) != NULL;
    apr_thread_mutex_unlock(log_mu);
    return found;
}

static void twake(void *baton)
{
    apr_atomic_inc32(&wakes);
}

static et_event_t *mk(const char *oid)
{
    et_event_t *ev = apr_pcalloc(ut_pool, sizeof(*ev));

    ck_assert_int_eq(et_txn_new(ut_pool, &ev->txn), APR_SUCCESS);
    ev->site = "s1";
    ev->object = ET_OBJ_MEMBER;
    ev->event = ET_EV_UPDATE;
    ev->oid = oid;
    ev->url = et_url_build(ut_pool, "http://r.example/h", ev->object, oid,
                           ev->event, ev->txn);
    ev->content_type = "application/json";
    ev->body = apr_psprintf(ut_pool, "{\"id\":\"%s\"}", oid);
    ev->body_len = strlen(ev->body);
    ev->state = ET_ST_PENDING;
    ev->created = apr_time_now();
    return ev;
}

static int log_level;                 /* the next start_intake's */

static void start_intake(void)
{
    apr_socket_t *l;
    const char *err = NULL;
    et_intake_conf_t conf;

    ck_assert_msg(et_intake_listen(&l, ut_pool, sock, &err) == APR_SUCCESS,
                  "listen: %s", err ? err : "?");
    memset(&conf, 0, sizeof(conf));
    conf.store = spec;
    conf.max = 16;
    conf.log = tlog;
    conf.wake = twake;
    conf.log_level = log_level;
    ck_assert_int_eq(et_intake_start(&in, ut_pool, l, &conf), APR_SUCCESS);
}

/* The outbox is @a store, or a SQLite file beside the socket if NULL. */
static void in_setup_with(const char *store)
{
    const char *err = NULL;

    strcpy(dir, "/tmp/et_intake_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    spec = store ? store
                 : apr_pstrcat(ut_pool, "sqlite3:", dir, "/outbox.db", NULL);
    sock = apr_pstrcat(ut_pool, dir, "/intake.sock", NULL);
    /* the schema, as httpd's parent makes it before the intake starts */
    ck_assert_msg(et_outbox_open(&ob, ut_pool, spec, 1, &err) == APR_SUCCESS,
                  "open: %s", err ? err : "?");
    ck_assert_int_eq(apr_thread_mutex_create(&log_mu, APR_THREAD_MUTEX_DEFAULT,
                                             ut_pool), APR_SUCCESS);
    logged[0] = '\0';
    wakes = 0;
    log_level = 0;
    in = NULL;
    start_intake();
}

static void in_setup(void)
{
    ut_setup();
    in_setup_with(NULL);
}

/* The same against PostgreSQL when ET_TEST_PGSQL is set (.ci/run). */
static void in_setup_pg(void)
{
    ut_setup();
    in_setup_with(ut_pgsql_fresh());
}

static void in_teardown(void)
{
    static const char *const files[] = { "outbox.db", "outbox.db-wal",
                                         "outbox.db-shm", "intake.sock",
                                         NULL };
    int i;

    et_intake_stop(in);
    et_outbox_close(ob);
    for (i = 0; files[i]; i++) {
        apr_file_remove(apr_pstrcat(ut_pool, dir, "/", files[i], NULL),
                        ut_pool);
    }
    ck_assert_int_eq(apr_dir_remove(dir, ut_pool), APR_SUCCESS);
    ut_teardown();
}

static int pending_s1(void)
{
    apr_array_header_t *sites;
    int i, n = 0;

    ck_assert_int_eq(et_outbox_site_counts(ob, ut_pool, &sites), APR_SUCCESS);
    for (i = 0; i < sites->nelts; i++) {
        et_site_counts_t *sc = APR_ARRAY_IDX(sites, i, et_site_counts_t *);
        if (!strcmp(sc->site, "s1")) {
            n = sc->counts.pending;
        }
    }
    return n;
}

START_TEST(a_record_decodes_to_the_event_it_was_made_from)
{
    et_event_t *ev = mk("m-1"), *back = NULL;
    char *rec;
    apr_size_t len;

    /* a body is bytes: a NUL inside it must survive */
    ev->body = "{\"a\":\"x\0y\"}";
    ev->body_len = 11;
    ev->due = ev->created + 5;
    ck_assert_int_eq(et_intake_encode(ut_pool, ev, &rec, &len), APR_SUCCESS);
    ck_assert_uint_eq(len, 4 + (((unsigned char)rec[0] << 24)
                                | ((unsigned char)rec[1] << 16)
                                | ((unsigned char)rec[2] << 8)
                                | (unsigned char)rec[3]));
    ck_assert_int_eq(et_intake_decode(ut_pool, rec + 4, len - 4, &back),
                     APR_SUCCESS);
    ck_assert_str_eq(back->txn, ev->txn);
    ck_assert_str_eq(back->site, "s1");
    ck_assert_str_eq(back->oid, "m-1");
    ck_assert_str_eq(back->url, ev->url);
    ck_assert_str_eq(back->content_type, "application/json");
    ck_assert_uint_eq(back->body_len, 11);
    ck_assert_int_eq(memcmp(back->body, ev->body, 11), 0);
    ck_assert_ptr_null(back->error);
    ck_assert_ptr_null(back->traceparent);
    ck_assert_ptr_null(back->tracestate);
    ck_assert_ptr_null(back->headers);
    ck_assert_int_eq(back->object, ET_OBJ_MEMBER);
    ck_assert_int_eq(back->event, ET_EV_UPDATE);
    ck_assert_int_eq(back->state, ET_ST_PENDING);
    ck_assert(back->created == ev->created);
    ck_assert(back->due == ev->created + 5);
}
END_TEST

/* What the event keeps from the admin's request crosses to the intake. */
START_TEST(a_record_carries_trace_context_and_headers)
{
    et_event_t *ev = mk("m-2"), *back = NULL;
    char *rec;
    apr_size_t len;

    ev->traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    ev->tracestate = "congo=t61rcWkgMzE";
    ev->headers = "X-Admin-User: alice\nX-Request-Id: r-1";
    ck_assert_int_eq(et_intake_encode(ut_pool, ev, &rec, &len), APR_SUCCESS);
    ck_assert_int_eq(et_intake_decode(ut_pool, rec + 4, len - 4, &back),
                     APR_SUCCESS);
    ck_assert_str_eq(back->traceparent, ev->traceparent);
    ck_assert_str_eq(back->tracestate, ev->tracestate);
    ck_assert_str_eq(back->headers, ev->headers);
    ck_assert_str_eq(back->txn, ev->txn);
}
END_TEST

START_TEST(a_malformed_record_is_refused)
{
    et_event_t *ev = mk("m-1"), *back = NULL;
    char *rec, *copy;
    apr_size_t len, cut;

    ck_assert_int_eq(et_intake_encode(ut_pool, ev, &rec, &len), APR_SUCCESS);
    /* every truncation, one byte more, a wrong version, an unknown object */
    for (cut = 0; cut < len - 4; cut++) {
        ck_assert_int_ne(et_intake_decode(ut_pool, rec + 4, cut, &back),
                         APR_SUCCESS);
    }
    copy = apr_palloc(ut_pool, len + 1);
    memcpy(copy, rec, len);
    copy[len] = 'x';
    ck_assert_int_ne(et_intake_decode(ut_pool, copy + 4, len - 3, &back),
                     APR_SUCCESS);
    copy[4] = 9;
    ck_assert_int_ne(et_intake_decode(ut_pool, copy + 4, len - 4, &back),
                     APR_SUCCESS);
    copy[4] = rec[4];
    copy[5] = 42;
    ck_assert_int_ne(et_intake_decode(ut_pool, copy + 4, len - 4, &back),
                     APR_SUCCESS);
    /* no txn: nothing the outbox could key it by */
    ev->txn = NULL;
    ck_assert_int_eq(et_intake_encode(ut_pool, ev, &rec, &len), APR_SUCCESS);
    ck_assert_int_ne(et_intake_decode(ut_pool, rec + 4, len - 4, &back),
                     APR_SUCCESS);
}
END_TEST

#define THREADS 4
#define EACH 25

static et_intake_client_t *client;
static volatile apr_uint32_t send_failures;

static void *APR_THREAD_FUNC sender(apr_thread_t *t, void *data)
{
    apr_pool_t *p;
    int i;

    apr_pool_create_unmanaged_ex(&p, NULL, NULL);
    for (i = 0; i < EACH; i++) {
        et_event_t *ev = apr_pcalloc(p, sizeof(*ev));
        const char *err = NULL;

        et_txn_new(p, &ev->txn);
        ev->site = "s1";
        ev->object = ET_OBJ_KEY;
        ev->event = ET_EV_CREATE;
        ev->oid = apr_psprintf(p, "k%d-%d", (int)(apr_uintptr_t)data, i);
        ev->url = "http://r.example/h/v1/key/x";
        ev->content_type = "application/json";
        ev->body = "{}";
        ev->body_len = 2;
        ev->created = apr_time_now();
        if (et_intake_store(client, ev, p, &err) != APR_SUCCESS) {
            apr_atomic_inc32(&send_failures);
        }
    }
    apr_pool_destroy(p);
    /* a plain return (ASan and pthread_exit, see et_checkpoint.c) */
    (void)t;
    return NULL;
}

START_TEST(events_from_many_threads_are_stored_each_once)
{
    apr_thread_t *t[THREADS];
    apr_status_t trv;
    et_event_t *ev;
    const char *err = NULL;
    int i;

    send_failures = 0;
    ck_assert_int_eq(et_intake_client_create(&client, ut_pool, sock, THREADS,
                                             apr_time_from_sec(5)),
                     APR_SUCCESS);
    for (i = 0; i < THREADS; i++) {
        ck_assert_int_eq(apr_thread_create(&t[i], NULL, sender,
                                           (void *)(apr_uintptr_t)i, ut_pool),
                         APR_SUCCESS);
    }
    for (i = 0; i < THREADS; i++) {
        ck_assert_int_eq(apr_thread_join(&trv, t[i]), APR_SUCCESS);
    }
    ck_assert_uint_eq(apr_atomic_read32(&send_failures), 0);
    ck_assert_int_eq(pending_s1(), THREADS * EACH);
    ck_assert_uint_gt(apr_atomic_read32(&wakes), 0);

    /* handed over twice (a lost answer): stored once */
    ev = mk("m-2");
    ck_assert_int_eq(et_intake_store(client, ev, ut_pool, &err), APR_SUCCESS);
    ck_assert_int_eq(et_intake_store(client, ev, ut_pool, &err), APR_SUCCESS);
    ck_assert_int_eq(pending_s1(), THREADS * EACH + 1);
}
END_TEST

/* A record larger than a socket buffer arrives in pieces; the intake's
 * buffer for it grows, and small records still follow on the same
 * connection. */
START_TEST(a_large_event_arrives_whole)
{
    apr_size_t n = 3 * 1024 * 1024, i;
    char *body = apr_palloc(ut_pool, n + 1);
    et_event_t *big = mk("m-big"), *back = NULL;
    const char *err = NULL;

    for (i = 0; i < n; i++) {
        body[i] = (char)('a' + i % 26);
    }
    body[n] = '\0';
    big->body = body;
    big->body_len = n;
    ck_assert_int_eq(et_intake_client_create(&client, ut_pool, sock, 1,
                                             apr_time_from_sec(10)),
                     APR_SUCCESS);
    ck_assert_int_eq(et_intake_store(client, big, ut_pool, &err), APR_SUCCESS);
    ck_assert_int_eq(et_intake_store(client, mk("m-small"), ut_pool, &err),
                     APR_SUCCESS);
    ck_assert_int_eq(et_outbox_show(ob, ut_pool, big->txn, &back),
                     APR_SUCCESS);
    ck_assert_ptr_nonnull(back);
    ck_assert_uint_eq(strlen(back->body), n);
    ck_assert_int_eq(memcmp(back->body, body, n), 0);
    ck_assert_int_eq(pending_s1(), 2);
}
END_TEST

START_TEST(a_client_is_told_when_nothing_was_stored)
{
    et_intake_client_t *c2;
    const char *err = NULL;

    ck_assert_int_eq(et_intake_client_create(&client, ut_pool, sock, 2,
                                             apr_time_from_sec(5)),
                     APR_SUCCESS);
    ck_assert_int_eq(et_intake_store(client, mk("m-3"), ut_pool, &err),
                     APR_SUCCESS);
    ck_assert_int_eq(pending_s1(), 1);

    /* the intake stops (the dispatcher restarts): the kept connection is
     * dead and no new one can be made */
    et_intake_stop(in);
    in = NULL;
    apr_file_remove(sock, ut_pool);
    ck_assert_int_ne(et_intake_store(client, mk("m-4"), ut_pool, &err),
                     APR_SUCCESS);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "intake"));
    ck_assert_int_eq(pending_s1(), 1);

    /* a new intake on the same path: the same client gets through again */
    start_intake();
    ck_assert_int_eq(et_intake_store(client, mk("m-5"), ut_pool, &err),
                     APR_SUCCESS);
    ck_assert_int_eq(pending_s1(), 2);

    /* nobody listening at all */
    ck_assert_int_eq(et_intake_client_create(&c2, ut_pool,
                                             apr_pstrcat(ut_pool, dir,
                                                         "/nobody.sock",
                                                         NULL),
                                             1, apr_time_from_sec(1)),
                     APR_SUCCESS);
    ck_assert_int_ne(et_intake_store(c2, mk("m-6"), ut_pool, &err),
                     APR_SUCCESS);
    ck_assert_ptr_nonnull(strstr(err, "cannot reach"));
    ck_assert_int_eq(pending_s1(), 2);
}
END_TEST

/* An intake whose outbox cannot be opened answers with the reason (its
 * sender stores the event itself), says so once (ET01030), and stores
 * again once it can. */
START_TEST(an_intake_that_cannot_store_says_why)
{
    const char *good = spec, *err = NULL;

    et_intake_stop(in);
    spec = apr_pstrcat(ut_pool, "sqlite3:", dir, "/no/such/dir/outbox.db",
                       NULL);
    start_intake();
    ck_assert_int_eq(et_intake_client_create(&client, ut_pool, sock, 1,
                                             apr_time_from_sec(5)),
                     APR_SUCCESS);
    ck_assert_int_ne(et_intake_store(client, mk("m-8"), ut_pool, &err),
                     APR_SUCCESS);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "outbox"));
    ck_assert_int_ne(et_intake_store(client, mk("m-9"), ut_pool, &err),
                     APR_SUCCESS);
    ck_assert(has_logged("ET01030"));
    ck_assert_int_eq(pending_s1(), 0);

    et_intake_stop(in);
    spec = good;
    start_intake();
    ck_assert_int_eq(et_intake_store(client, mk("m-10"), ut_pool, &err),
                     APR_SUCCESS);
    ck_assert_int_eq(pending_s1(), 1);
}
END_TEST

START_TEST(a_garbled_connection_is_closed_and_others_go_on)
{
    apr_sockaddr_t *sa;
    apr_socket_t *s;
    char junk[8] = { 0x7f, 0x7f, 0x7f, 0x7f, 'j', 'u', 'n', 'k' };
    char b[4];
    apr_size_t n = sizeof(junk);
    const char *err = NULL;
    apr_status_t rv;

    ck_assert_int_eq(apr_sockaddr_info_get(&sa, sock, APR_UNIX, 0, 0, ut_pool),
                     APR_SUCCESS);
    ck_assert_int_eq(apr_socket_create(&s, APR_UNIX, SOCK_STREAM, 0, ut_pool),
                     APR_SUCCESS);
    ck_assert_int_eq(apr_socket_connect(s, sa), APR_SUCCESS);
    apr_socket_timeout_set(s, apr_time_from_sec(5));
    ck_assert_int_eq(apr_socket_send(s, junk, &n), APR_SUCCESS);
    n = sizeof(b);
    rv = apr_socket_recv(s, b, &n);
    ck_assert_int_eq(rv, APR_EOF);
    ck_assert_uint_eq(n, 0);
    apr_socket_close(s);
    ck_assert(has_logged("ET01029"));

    ck_assert_int_eq(et_intake_client_create(&client, ut_pool, sock, 1,
                                             apr_time_from_sec(5)),
                     APR_SUCCESS);
    ck_assert_int_eq(et_intake_store(client, mk("m-7"), ut_pool, &err),
                     APR_SUCCESS);
    ck_assert_int_eq(pending_s1(), 1);
}
END_TEST

/* A server that answers the first record "stored" and then goes silent
 * (a wedged dispatcher): reads records until told to stop. */
static volatile apr_uint32_t mute_stop;

static void *APR_THREAD_FUNC mute_server(apr_thread_t *t, void *data)
{
    apr_socket_t *l = data, *s = NULL;
    apr_pool_t *p;
    char buf[4096];
    int answered = 0;

    apr_pool_create_unmanaged_ex(&p, NULL, NULL);
    if (apr_socket_accept(&s, l, p) == APR_SUCCESS) {
        apr_socket_timeout_set(s, apr_time_from_msec(50));
        while (!apr_atomic_read32(&mute_stop)) {
            apr_size_t n = sizeof(buf);
            apr_status_t rv = apr_socket_recv(s, buf, &n);

            if (rv == APR_SUCCESS && n && !answered) {
                char zero[4] = { 0, 0, 0, 0 };
                apr_size_t z = 4;

                apr_socket_send(s, zero, &z);
                answered = 1;
            }
            else if (rv != APR_SUCCESS && !APR_STATUS_IS_TIMEUP(rv)) {
                break;
            }
        }
        apr_socket_close(s);
    }
    apr_pool_destroy(p);
    (void)t;
    return NULL;
}

/* The wait is the client's own: a kept connection that hears nothing
 * times out once ("in time"), without a second try on a new one. */
/* The dispatcher out of descriptors: a child that connected must not wait
 * out its whole timeout in the listener's backlog; it hears at once and
 * stores its event itself, and the intake takes connections again once
 * descriptors are free. */
START_TEST(out_of_descriptors_a_child_hears_at_once)
{
    static int fds[65536];
    int n = 0, i;
    const char *err = NULL;
    apr_time_t t0;
    apr_interval_time_t took;
    apr_status_t rv;

    ck_assert_int_eq(et_intake_client_create(&client, ut_pool, sock, 1,
                                             apr_time_from_sec(5)),
                     APR_SUCCESS);
    /* every descriptor but one taken: the client's socket gets it */
    while (n < (int)(sizeof(fds) / sizeof(fds[0]))
           && (fds[n] = dup(0)) >= 0) {
        n++;
    }
    ck_assert_int_gt(n, 0);
    close(fds[--n]);
    t0 = apr_time_now();
    rv = et_intake_store(client, mk("m-fd"), ut_pool, &err);
    took = apr_time_now() - t0;
    for (i = 0; i < n; i++) {
        close(fds[i]);
    }
    ck_assert_int_ne(rv, APR_SUCCESS);
    ck_assert_msg(took < apr_time_from_sec(2),
                  "the client waited %" APR_TIME_T_FMT " us", took);
    ck_assert(has_logged("ET01028"));
    /* descriptors again: stored, once the intake has taken its spare
     * descriptor back (a connection that comes before may still be shed:
     * the client sees a reset, as a child would, and tries again) */
    t0 = apr_time_now();
    while ((rv = et_intake_store(client, mk("m-fd2"), ut_pool, &err))
           != APR_SUCCESS && apr_time_now() - t0 < apr_time_from_sec(3)) {
        apr_sleep(apr_time_from_msec(20));
    }
    ck_assert_msg(rv == APR_SUCCESS, "store: %s", err ? err : "?");
}
END_TEST

START_TEST(a_silent_intake_times_out_once)
{
    apr_socket_t *l;
    apr_thread_t *t;
    apr_status_t trv;
    const char *err = NULL, *lerr = NULL;
    apr_time_t t0;
    apr_interval_time_t took;

    et_intake_stop(in);               /* the fixture's: this one is mute */
    in = NULL;
    ck_assert_int_eq(et_intake_listen(&l, ut_pool, sock, &lerr), APR_SUCCESS);
    mute_stop = 0;
    ck_assert_int_eq(apr_thread_create(&t, NULL, mute_server, l, ut_pool),
                     APR_SUCCESS);
    ck_assert_int_eq(et_intake_client_create(&client, ut_pool, sock, 1,
                                             apr_time_from_msec(300)),
                     APR_SUCCESS);
    ck_assert_int_eq(et_intake_store(client, mk("m-11"), ut_pool, &err),
                     APR_SUCCESS);
    t0 = apr_time_now();
    ck_assert_int_eq(et_intake_store(client, mk("m-12"), ut_pool, &err),
                     APR_TIMEUP);
    took = apr_time_now() - t0;
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "did not answer in time"));
    ck_assert_msg(took >= apr_time_from_msec(250)
                  && took < apr_time_from_msec(550),
                  "waited %" APR_TIME_T_FMT " us", took);
    apr_atomic_set32(&mute_stop, 1);
    ck_assert_int_eq(apr_thread_join(&trv, t), APR_SUCCESS);
    apr_socket_close(l);
}
END_TEST

/* A dispatcher as the intake sees it (et_lessee_t), called on the
 * intake's thread: oids "paused-*" are of a paused site, "plain-*" of a
 * site with a backlog; the others it would lease. */
static volatile apr_uint32_t reserves, leased, given_back;

static int t_reserve(void *baton, et_event_t *ev)
{
    apr_atomic_inc32(&reserves);
    if (!strncmp(ev->oid, "paused-", 7)) {
        return ET_LEASE_PAUSED;
    }
    if (!strncmp(ev->oid, "plain-", 6)) {
        return ET_LEASE_NONE;
    }
    ev->lease_owner = "T";
    ev->lease_until = apr_time_now() + apr_time_from_sec(30);
    return ET_LEASE_TAKEN;
}

static void t_settle(void *baton, et_event_t **evs, const apr_status_t *st,
                     int n)
{
    int i;

    for (i = 0; i < n; i++) {
        if (st[i] == APR_SUCCESS && evs[i]->lease_owner
            && evs[i]->rowid > 0) {
            apr_atomic_inc32(&leased);
        }
        else {
            apr_atomic_inc32(&given_back);
        }
    }
}

/* One event through the intake. */
static void through(const char *oid)
{
    const char *err = NULL;

    ck_assert_msg(et_intake_store(client, mk(oid), ut_pool, &err)
                  == APR_SUCCESS, "%s: %s", oid, err ? err : "?");
}

/* The intake commits in turn and answers before it settles and wakes: once
 * an event of a paused site (which neither settles nor wakes) is answered,
 * every earlier commit is over, its settle and wake included. */
static void barrier(void)
{
    static int n;

    through(apr_psprintf(ut_pool, "paused-%d", ++n));
}

START_TEST(fresh_events_are_leased_to_the_dispatcher_as_they_are_stored)
{
    et_lessee_t l;
    apr_array_header_t *a = NULL;
    et_outbox_counts_t c;
    apr_array_header_t *sites;
    int i;

    et_intake_stop(in);
    log_level = ET_LOG_DEBUG;
    start_intake();
    reserves = leased = given_back = 0;
    l.reserve = t_reserve;
    l.settle = t_settle;
    l.baton = NULL;
    et_intake_lessee(in, &l);
    ck_assert_int_eq(et_intake_client_create(&client, ut_pool, sock, 1,
                                             apr_time_from_sec(5)),
                     APR_SUCCESS);

    through("a");                     /* first of its object: leased */
    barrier();
    ck_assert_uint_eq(apr_atomic_read32(&leased), 1);
    ck_assert_uint_eq(apr_atomic_read32(&wakes), 0);
    ck_assert(has_logged("ET01039: intake stored 1 event(s), 1 of them"));
    through("a");                     /* "a" is pending: stored plainly */
    barrier();
    ck_assert_uint_eq(apr_atomic_read32(&given_back), 1);
    ck_assert_uint_eq(apr_atomic_read32(&wakes), 1);
    through("plain-1");               /* the claim loop's: woken */
    barrier();
    ck_assert_uint_eq(apr_atomic_read32(&wakes), 2);
    ck_assert_uint_eq(apr_atomic_read32(&leased), 1);
    ck_assert_uint_eq(apr_atomic_read32(&reserves), 6);

    /* the dispatcher withdraws: nothing is reserved any more, and every
     * event wakes the claim loop */
    et_intake_lessee(in, NULL);
    through("b");
    through("c");
    for (i = 0; i < 500 && apr_atomic_read32(&wakes) < 4; i++) {
        apr_sleep(apr_time_from_msec(10));
    }
    ck_assert_uint_eq(apr_atomic_read32(&wakes), 4);
    ck_assert_uint_eq(apr_atomic_read32(&reserves), 6);

    /* in the outbox: the first "a" leased to T; a claim by anyone else
     * takes every other event but the second "a", which waits for it */
    memset(&c, 0, sizeof(c));
    ck_assert_int_eq(et_outbox_site_counts(ob, ut_pool, &sites), APR_SUCCESS);
    ck_assert_int_eq(sites->nelts, 1);
    c = APR_ARRAY_IDX(sites, 0, et_site_counts_t *)->counts;
    ck_assert_int_eq(c.pending, 8);
    ck_assert_int_eq(c.leased, 1);
    ck_assert_int_eq(et_outbox_claim(ob, ut_pool, "s1", "X",
                                     apr_time_from_sec(30), 10, &a),
                     APR_SUCCESS);
    ck_assert_int_eq(a->nelts, 6);
    for (i = 0; i < a->nelts; i++) {
        ck_assert_str_ne(APR_ARRAY_IDX(a, i, et_event_t *)->oid, "a");
    }
}
END_TEST

Suite *intake_suite(void)
{
    Suite *s = suite_create("intake");
    TCase *tc = tcase_create("records");
    TCase *srv = tcase_create("server");

    tcase_add_checked_fixture(tc, ut_setup, ut_teardown);
    tcase_add_test(tc, a_record_decodes_to_the_event_it_was_made_from);
    tcase_add_test(tc, a_record_carries_trace_context_and_headers);
    tcase_add_test(tc, a_malformed_record_is_refused);
    suite_add_tcase(s, tc);

    tcase_add_checked_fixture(srv, in_setup, in_teardown);
    tcase_set_timeout(srv, 60);
    tcase_add_test(srv, events_from_many_threads_are_stored_each_once);
    tcase_add_test(srv, a_large_event_arrives_whole);
    tcase_add_test(srv, a_client_is_told_when_nothing_was_stored);
    tcase_add_test(srv, a_garbled_connection_is_closed_and_others_go_on);
    tcase_add_test(srv, an_intake_that_cannot_store_says_why);
    tcase_add_test(srv, a_silent_intake_times_out_once);
    tcase_add_test(srv, out_of_descriptors_a_child_hears_at_once);
    tcase_add_test(srv,
                   fresh_events_are_leased_to_the_dispatcher_as_they_are_stored);
    suite_add_tcase(s, srv);
    if (ut_have_pgsql()) {
        TCase *pg = tcase_create("server-pgsql");

        tcase_add_checked_fixture(pg, in_setup_pg, in_teardown);
        tcase_set_timeout(pg, 60);
        tcase_add_test(pg, events_from_many_threads_are_stored_each_once);
        tcase_add_test(pg, a_large_event_arrives_whole);
        tcase_add_test(pg, a_client_is_told_when_nothing_was_stored);
        tcase_add_test(pg,
                   fresh_events_are_leased_to_the_dispatcher_as_they_are_stored);
        suite_add_tcase(s, pg);
    }
    return s;
}
