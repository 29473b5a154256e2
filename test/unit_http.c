/* Licensed under the Apache License, Version 2.0. */
/*
 * unit_http.c: the HTTP client (et_http_curl.c) against a real server on a
 * loopback socket, run by threads of this test: calls side by side on one
 * thread, answers and their Retry-After, the bound on the body kept,
 * connections reused, timeouts, refused connections, abort and wake-up,
 * and the proxy modes (the same server answers absolute-form requests as
 * a forward proxy would).
 */
#include <string.h>
#include <stdlib.h>

#include <apr_network_io.h>
#include <apr_strings.h>
#include <apr_thread_proc.h>
#include <apr_atomic.h>

#include "et_http.h"
#include "unit_tests.h"

#define MAX_CONNS 32

/* The test server: one thread accepts, one thread per connection answers
 * by path. Its counters are read by the test (apr_atomic_*). */
typedef struct server_t {
    apr_pool_t *pool;
    apr_socket_t *listener;
    apr_port_t port;
    apr_thread_t *acceptor;
    apr_thread_t *conns[MAX_CONNS];
    volatile apr_uint32_t nconns;     /* connections accepted */
    volatile apr_uint32_t requests;   /* requests read in full */
    volatile apr_uint32_t proxied;    /* of them, in absolute form */
    volatile apr_uint32_t proxy_auth; /* of them, with user:pass */
    volatile int stop;
} server_t;

typedef struct conn_t {
    server_t *srv;
    apr_socket_t *sock;
} conn_t;

static const char *answer_for(const char *path)
{
    static char big[4096];

    if (!strncmp(path, "http://", 7)) {
        /* a forward proxy's request: "/auth" is refused as a proxy does */
        return strstr(path, "/auth")
            ? "HTTP/1.1 407 Proxy Authentication Required\r\n"
              "Proxy-Authenticate: Basic realm=\"p\"\r\n"
              "Content-Length: 0\r\n\r\n"
            : "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n"
              "{\"proxied\":1}";
    }
    if (!strncmp(path, "/ok", 3)) {
        return "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}";
    }
    if (!strncmp(path, "/busy", 5)) {
        /* a long body: the client keeps only response_keep bytes of it */
        if (!big[0]) {
            int n = apr_snprintf(big, sizeof(big), "HTTP/1.1 503 Busy\r\n"
                                 "Retry-After:  7 \r\nContent-Length: 3000"
                                 "\r\n\r\n");
            memset(big + n, 'x', 3000);
            big[n + 3000] = '\0';
        }
        return big;
    }
    return NULL;                      /* /hang: never answers */
}

/* Read one request (head and Content-Length body) into buf; its length,
 * or 0 when the client closed. */
static apr_size_t read_request(apr_socket_t *s, char *buf, apr_size_t size)
{
    apr_size_t have = 0, need = 0;
    char *eoh = NULL;

    for (;;) {
        apr_size_t n = size - 1 - have;

        if (n == 0 || apr_socket_recv(s, buf + have, &n) != APR_SUCCESS
            || n == 0) {
            return 0;
        }
        have += n;
        buf[have] = '\0';
        if (!eoh && (eoh = strstr(buf, "\r\n\r\n")) != NULL) {
            const char *cl = strstr(buf, "Content-Length:");

            need = (eoh - buf) + 4 + (cl && cl < eoh ? atoi(cl + 15) : 0);
        }
        if (eoh && have >= need) {
            return have;
        }
    }
}

static void *APR_THREAD_FUNC serve_conn(apr_thread_t *t, void *data)
{
    conn_t *c = data;
    char buf[8192];

    while (read_request(c->sock, buf, sizeof(buf))) {
        char path[64] = "";
        const char *a;
        apr_size_t len;

        apr_atomic_inc32(&c->srv->requests);
        sscanf(buf, "%*s %63s", path);
        if (!strncmp(path, "http://", 7)) {
            apr_atomic_inc32(&c->srv->proxied);
            /* base64 of "user:pa:ss" */
            if (strstr(buf, "Proxy-Authorization: Basic dXNlcjpwYTpzcw==")) {
                apr_atomic_inc32(&c->srv->proxy_auth);
            }
        }
        a = answer_for(path);
        if (!a) {
            continue;                 /* hang: wait for the client to go */
        }
        len = strlen(a);
        if (apr_socket_send(c->sock, a, &len) != APR_SUCCESS) {
            break;
        }
    }
    apr_socket_close(c->sock);
    (void)t;
    return NULL;
}

static void *APR_THREAD_FUNC acceptor(apr_thread_t *t, void *data)
{
    server_t *srv = data;

    while (!srv->stop) {
        apr_socket_t *s;
        conn_t *c;
        apr_uint32_t i;

        if (apr_socket_accept(&s, srv->listener, srv->pool) != APR_SUCCESS) {
            break;
        }
        i = apr_atomic_read32(&srv->nconns);
        if (srv->stop || i == MAX_CONNS) {
            apr_socket_close(s);
            continue;
        }
        c = apr_pcalloc(srv->pool, sizeof(*c));
        c->srv = srv;
        c->sock = s;
        apr_thread_create(&srv->conns[i], NULL, serve_conn, c, srv->pool);
        apr_atomic_inc32(&srv->nconns);
    }
    (void)t;
    return NULL;
}

static server_t *server_start(void)
{
    server_t *srv = apr_pcalloc(ut_pool, sizeof(*srv));
    apr_sockaddr_t *sa;

    srv->pool = ut_pool;
    ck_assert_int_eq(apr_sockaddr_info_get(&sa, "127.0.0.1", APR_INET, 0, 0,
                                           ut_pool), APR_SUCCESS);
    ck_assert_int_eq(apr_socket_create(&srv->listener, APR_INET, SOCK_STREAM,
                                       APR_PROTO_TCP, ut_pool), APR_SUCCESS);
    apr_socket_opt_set(srv->listener, APR_SO_REUSEADDR, 1);
    ck_assert_int_eq(apr_socket_bind(srv->listener, sa), APR_SUCCESS);
    ck_assert_int_eq(apr_socket_listen(srv->listener, 16), APR_SUCCESS);
    ck_assert_int_eq(apr_socket_addr_get(&sa, APR_LOCAL, srv->listener),
                     APR_SUCCESS);
    srv->port = sa->port;
    ck_assert_int_eq(apr_thread_create(&srv->acceptor, NULL, acceptor, srv,
                                       ut_pool), APR_SUCCESS);
    return srv;
}

static void server_stop(server_t *srv)
{
    apr_sockaddr_t *sa;
    apr_socket_t *s;
    apr_status_t trv;
    apr_uint32_t i, n;

    /* a connection of our own wakes the acceptor up */
    srv->stop = 1;
    apr_sockaddr_info_get(&sa, "127.0.0.1", APR_INET, srv->port, 0, ut_pool);
    if (apr_socket_create(&s, APR_INET, SOCK_STREAM, APR_PROTO_TCP, ut_pool)
        == APR_SUCCESS) {
        apr_socket_connect(s, sa);
        apr_socket_close(s);
    }
    apr_thread_join(&trv, srv->acceptor);
    n = apr_atomic_read32(&srv->nconns);
    /* each connection's thread ends when the client closes it: the
     * tests destroy their client first */
    for (i = 0; i < n; i++) {
        apr_thread_join(&trv, srv->conns[i]);
    }
    apr_socket_close(srv->listener);
}

/* What a call's callback saw, copied out of the call's pool. */
typedef struct seen_t {
    int done;
    int status;
    int aborted;
    char error[256];
    char retry_after[32];
    apr_size_t body_len;
    apr_interval_time_t elapsed;
} seen_t;

static void on_done(void *baton, const et_http_response_t *r)
{
    seen_t *s = baton;

    s->done++;
    s->status = r->status;
    s->aborted = r->aborted;
    apr_cpystrn(s->error, r->error ? r->error : "", sizeof(s->error));
    apr_cpystrn(s->retry_after, r->retry_after ? r->retry_after : "",
                sizeof(s->retry_after));
    s->body_len = r->body_len;
    s->elapsed = r->elapsed;
}

static void start_via(et_http_t *h, apr_port_t port, const char *path,
                      apr_interval_time_t timeout, const et_proxy_t *proxy,
                      seen_t *seen)
{
    et_http_request_t req;

    memset(&req, 0, sizeof(req));
    req.method = "PUT";
    req.url = apr_psprintf(ut_pool, "http://127.0.0.1:%d%s", port, path);
    req.headers = apr_array_make(ut_pool, 1, sizeof(const char *));
    APR_ARRAY_PUSH(req.headers, const char *) = "Content-Type: application/json";
    req.body = "{\"id\":1}";
    req.body_len = strlen(req.body);
    req.connect_timeout = apr_time_from_sec(2);
    req.timeout = timeout;
    req.response_keep = 100;
    req.proxy = proxy;
    ck_assert_int_eq(et_http_start(h, ut_pool, &req, on_done, seen),
                     APR_SUCCESS);
}

static void start(et_http_t *h, apr_port_t port, const char *path,
                  apr_interval_time_t timeout, seen_t *seen)
{
    start_via(h, port, path, timeout, NULL, seen);
}

/* A port where nothing listens (a server's, stopped). */
static apr_port_t closed_port(void)
{
    server_t *srv = server_start();
    apr_port_t port = srv->port;

    server_stop(srv);
    return port;
}

/* Run until no call is under way, with a deadline. */
static void run_all(et_http_t *h)
{
    apr_time_t deadline = apr_time_now() + apr_time_from_sec(10);

    while (et_http_running(h) && apr_time_now() < deadline) {
        et_http_run(h, apr_time_from_msec(100));
    }
    ck_assert_int_eq(et_http_running(h), 0);
}

/* A client in a pool of its own: destroying it closes its connections. */
static et_http_t *client(apr_pool_t **hp)
{
    et_http_t *h;

    ck_assert_int_eq(et_http_curl_global_init(), APR_SUCCESS);
    ck_assert_int_eq(apr_pool_create(hp, ut_pool), APR_SUCCESS);
    ck_assert_int_eq(et_http_curl_create(&h, *hp), APR_SUCCESS);
    return h;
}

START_TEST(calls_run_side_by_side_and_reuse_connections)
{
    server_t *srv = server_start();
    apr_pool_t *hp;
    et_http_t *h = client(&hp);
    seen_t ok[3], busy, again[3];
    apr_uint32_t conns;
    int i;

    memset(ok, 0, sizeof(ok));
    memset(&busy, 0, sizeof(busy));
    memset(again, 0, sizeof(again));
    for (i = 0; i < 3; i++) {
        start(h, srv->port, "/ok", apr_time_from_sec(5), &ok[i]);
    }
    start(h, srv->port, "/busy", apr_time_from_sec(5), &busy);
    ck_assert_int_eq(et_http_running(h), 4);
    run_all(h);
    for (i = 0; i < 3; i++) {
        ck_assert_int_eq(ok[i].done, 1);
        ck_assert_int_eq(ok[i].status, 200);
        ck_assert_str_eq(ok[i].error, "");
        ck_assert_uint_eq(ok[i].body_len, 11);
    }
    ck_assert_int_eq(busy.done, 1);
    ck_assert_int_eq(busy.status, 503);
    ck_assert_str_eq(busy.retry_after, "7");
    ck_assert_uint_eq(busy.body_len, 100);        /* response_keep */
    conns = apr_atomic_read32(&srv->nconns);
    ck_assert_uint_le(conns, 4);
    ck_assert_uint_eq(apr_atomic_read32(&srv->requests), 4);

    /* the same host again: kept-alive connections, no new ones */
    for (i = 0; i < 3; i++) {
        start(h, srv->port, "/ok", apr_time_from_sec(5), &again[i]);
    }
    run_all(h);
    for (i = 0; i < 3; i++) {
        ck_assert_int_eq(again[i].status, 200);
    }
    ck_assert_uint_eq(apr_atomic_read32(&srv->nconns), conns);
    ck_assert_uint_eq(apr_atomic_read32(&srv->requests), 7);

    apr_pool_destroy(hp);             /* closes the client's connections */
    server_stop(srv);
}
END_TEST

START_TEST(a_call_past_its_timeout_ends_without_status)
{
    server_t *srv = server_start();
    apr_pool_t *hp;
    et_http_t *h = client(&hp);
    seen_t hang;

    memset(&hang, 0, sizeof(hang));
    start(h, srv->port, "/hang", apr_time_from_msec(300), &hang);
    run_all(h);
    ck_assert_int_eq(hang.done, 1);
    ck_assert_int_eq(hang.status, 0);
    ck_assert_int_eq(hang.aborted, 0);
    ck_assert_msg(strstr(hang.error, "imeout") != NULL, "error: %s",
                  hang.error);
    /* libcurl times the call on its own clock: allow it a little */
    ck_assert_int_ge(hang.elapsed, apr_time_from_msec(250));

    apr_pool_destroy(hp);
    server_stop(srv);
}
END_TEST

START_TEST(abort_ends_every_call_under_way)
{
    server_t *srv = server_start();
    apr_pool_t *hp;
    et_http_t *h = client(&hp);
    seen_t hang[2];
    apr_time_t deadline = apr_time_now() + apr_time_from_sec(10);

    memset(hang, 0, sizeof(hang));
    start(h, srv->port, "/hang", apr_time_from_sec(30), &hang[0]);
    start(h, srv->port, "/hang", apr_time_from_sec(30), &hang[1]);
    /* both requests reach the server before the abort */
    while (apr_atomic_read32(&srv->requests) < 2
           && apr_time_now() < deadline) {
        et_http_run(h, apr_time_from_msec(50));
    }
    ck_assert_uint_eq(apr_atomic_read32(&srv->requests), 2);
    ck_assert_int_eq(hang[0].done + hang[1].done, 0);
    et_http_abort(h);
    ck_assert_int_eq(et_http_running(h), 0);
    ck_assert_int_eq(hang[0].done, 1);
    ck_assert_int_eq(hang[1].done, 1);
    ck_assert(hang[0].aborted && hang[1].aborted);
    ck_assert_int_eq(hang[0].status, 0);

    apr_pool_destroy(hp);
    server_stop(srv);
}
END_TEST

START_TEST(a_refused_connection_is_a_transport_error)
{
    server_t *srv = server_start();
    apr_port_t port = srv->port;
    apr_pool_t *hp;
    et_http_t *h;
    seen_t refused;

    server_stop(srv);                 /* nobody listens there any more */
    h = client(&hp);
    memset(&refused, 0, sizeof(refused));
    start(h, port, "/ok", apr_time_from_sec(5), &refused);
    run_all(h);
    ck_assert_int_eq(refused.done, 1);
    ck_assert_int_eq(refused.status, 0);
    ck_assert_msg(strstr(refused.error, "onnect") != NULL, "error: %s",
                  refused.error);
}
END_TEST

START_TEST(a_proxy_is_used_and_a_reused_handle_forgets_it)
{
    apr_port_t nobody = closed_port();
    server_t *srv = server_start();
    apr_pool_t *hp;
    et_http_t *h = client(&hp);
    et_proxy_t px;
    seen_t via, auth, direct;

    memset(&px, 0, sizeof(px));
    px.mode = ET_PROXY_URL;
    px.url = apr_psprintf(ut_pool, "http://127.0.0.1:%d", srv->port);
    px.user = "user";
    px.password = "pa:ss";
    memset(&via, 0, sizeof(via));
    memset(&auth, 0, sizeof(auth));
    memset(&direct, 0, sizeof(direct));

    /* the receiver does not exist: only the proxy can answer */
    start_via(h, nobody, "/ok", apr_time_from_sec(5), &px, &via);
    run_all(h);
    ck_assert_msg(via.status == 200, "via: %d %s", via.status, via.error);
    ck_assert_uint_eq(apr_atomic_read32(&srv->proxied), 1);
    ck_assert_uint_eq(apr_atomic_read32(&srv->proxy_auth), 1);

    /* a 407 is the proxy's: a transport error (retried), not an answer */
    start_via(h, nobody, "/auth", apr_time_from_sec(5), &px, &auth);
    run_all(h);
    ck_assert_int_eq(auth.status, 0);
    ck_assert_msg(strstr(auth.error, "407") && strstr(auth.error, px.url),
                  "error: %s", auth.error);

    /* the same (only) handle, now for a site without a proxy: direct */
    start(h, nobody, "/ok", apr_time_from_sec(5), &direct);
    run_all(h);
    ck_assert_int_eq(direct.status, 0);
    ck_assert_msg(strstr(direct.error, "onnect") != NULL
                  && strstr(direct.error, "proxy") == NULL,
                  "error: %s", direct.error);
    ck_assert_uint_eq(apr_atomic_read32(&srv->proxied), 2);

    apr_pool_destroy(hp);
    server_stop(srv);
}
END_TEST

START_TEST(a_refused_proxy_is_named_in_the_error)
{
    apr_port_t nobody = closed_port();
    server_t *srv = server_start();
    apr_pool_t *hp;
    et_http_t *h = client(&hp);
    et_proxy_t px;
    seen_t seen;

    memset(&px, 0, sizeof(px));
    px.mode = ET_PROXY_URL;
    px.url = apr_psprintf(ut_pool, "http://127.0.0.1:%d", nobody);
    memset(&seen, 0, sizeof(seen));
    start_via(h, srv->port, "/ok", apr_time_from_sec(5), &px, &seen);
    run_all(h);
    ck_assert_int_eq(seen.status, 0);
    ck_assert_msg(strstr(seen.error, apr_psprintf(ut_pool, "through proxy %s",
                                                  px.url)) != NULL,
                  "error: %s", seen.error);
    ck_assert_uint_eq(apr_atomic_read32(&srv->requests), 0);

    apr_pool_destroy(hp);
    server_stop(srv);
}
END_TEST

START_TEST(off_ignores_the_environment_env_follows_it)
{
    apr_port_t nobody = closed_port();
    server_t *srv = server_start();
    apr_pool_t *hp;
    et_http_t *h = client(&hp);
    et_proxy_t env;
    seen_t off, def, envd;

    memset(&env, 0, sizeof(env));
    env.mode = ET_PROXY_ENV;
    memset(&off, 0, sizeof(off));
    memset(&def, 0, sizeof(def));
    memset(&envd, 0, sizeof(envd));
    /* the environment's proxy is the test server; no_proxy would not
     * matter (off must ignore all of them) */
    setenv("http_proxy", apr_psprintf(ut_pool, "http://127.0.0.1:%d",
                                      srv->port), 1);
    unsetenv("no_proxy");
    unsetenv("NO_PROXY");

    /* off (and no proxy given): straight to the closed port, refused */
    {
        et_proxy_t o;

        memset(&o, 0, sizeof(o));
        start_via(h, nobody, "/ok", apr_time_from_sec(5), &o, &off);
    }
    start(h, nobody, "/ok", apr_time_from_sec(5), &def);
    run_all(h);
    ck_assert_int_eq(off.status, 0);
    ck_assert_int_eq(def.status, 0);
    ck_assert_uint_eq(apr_atomic_read32(&srv->proxied), 0);

    /* env: through the environment's proxy */
    start_via(h, nobody, "/ok", apr_time_from_sec(5), &env, &envd);
    run_all(h);
    unsetenv("http_proxy");
    ck_assert_int_eq(envd.status, 200);
    ck_assert_uint_eq(apr_atomic_read32(&srv->proxied), 1);

    apr_pool_destroy(hp);
    server_stop(srv);
}
END_TEST

static void *APR_THREAD_FUNC waker(apr_thread_t *t, void *data)
{
    apr_sleep(apr_time_from_msec(100));
    et_http_wake(data);
    (void)t;
    return NULL;
}

START_TEST(wake_ends_a_wait_from_another_thread)
{
    apr_pool_t *hp;
    et_http_t *h = client(&hp);
    apr_thread_t *t;
    apr_status_t trv;
    apr_time_t start_at = apr_time_now();

    ck_assert_int_eq(apr_thread_create(&t, NULL, waker, h, ut_pool),
                     APR_SUCCESS);
    /* no call under way: only the wake-up can end this before 30 s */
    et_http_run(h, apr_time_from_sec(30));
    ck_assert_int_lt(apr_time_now() - start_at, apr_time_from_sec(20));
    apr_thread_join(&trv, t);
}
END_TEST

Suite *http_suite(void)
{
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("curl multi");

    tcase_add_checked_fixture(tc, ut_setup, ut_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, calls_run_side_by_side_and_reuse_connections);
    tcase_add_test(tc, a_call_past_its_timeout_ends_without_status);
    tcase_add_test(tc, abort_ends_every_call_under_way);
    tcase_add_test(tc, a_refused_connection_is_a_transport_error);
    tcase_add_test(tc, wake_ends_a_wait_from_another_thread);
    tcase_add_test(tc, a_proxy_is_used_and_a_reused_handle_forgets_it);
    tcase_add_test(tc, a_refused_proxy_is_named_in_the_error);
    tcase_add_test(tc, off_ignores_the_environment_env_follows_it);
    suite_add_tcase(s, tc);
    return s;
}
