/* Licensed under the Apache License, Version 2.0. */
/**
 * @file et_http.h
 * @brief The HTTP client the dispatcher calls with; et_http_curl.c is its
 *        libcurl implementation (the way mod_md keeps curl behind
 *        md_http.h). Calls run side by side on one thread, through a
 *        libcurl multi handle: they are started with et_http_start() and
 *        finish, each with its callback, inside et_http_run().
 */
#ifndef ET_HTTP_H
#define ET_HTTP_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>

/**
 * TLS settings of a site. PEM data is held in memory (read at startup, as
 * root) so that the dispatcher, running as httpd's User, needs no access to
 * the key files.
 */
typedef struct et_tls_t {
    int verify;                       /* 0 only by explicit configuration */
    const char *ca;                   /* PEM bundle, NULL: system store */
    apr_size_t ca_len;
    const char *cert;                 /* client certificate (PEM) */
    apr_size_t cert_len;
    const char *key;                  /* its private key (PEM) */
    apr_size_t key_len;
} et_tls_t;

/** How a site's calls reach the network. */
typedef enum {
    ET_PROXY_OFF = 0,                 /* direct; *_proxy variables ignored */
    ET_PROXY_ENV,                     /* libcurl follows http_proxy & co. */
    ET_PROXY_URL                      /* through the proxy at url */
} et_proxy_mode_e;

/**
 * A site's forward proxy. The credentials are read from a file at startup
 * and kept apart from the URL, so that the URL can be logged.
 */
typedef struct et_proxy_t {
    et_proxy_mode_e mode;
    const char *url;                  /* scheme://host:port, no user info */
    const char *user;                 /* NULL: no proxy authentication */
    const char *password;
} et_proxy_t;

typedef struct et_http_request_t {
    const char *method;
    const char *url;
    apr_array_header_t *headers;      /* of const char *, "Name: value" */
    const char *body;                 /* not copied: must outlive the call */
    apr_size_t body_len;
    apr_interval_time_t connect_timeout;
    apr_interval_time_t timeout;
    apr_size_t response_keep;         /* bytes of the answer's body kept */
    const et_tls_t *tls;              /* NULL: verify with the system store */
    const et_proxy_t *proxy;          /* NULL: direct, as ET_PROXY_OFF */
} et_http_request_t;

typedef struct et_http_response_t {
    int status;                       /* 0: no HTTP answer (see error) */
    const char *error;                /* transport error, NULL otherwise;
                                       * it names the proxy if one was set */
    const char *retry_after;          /* Retry-After header, if any */
    const char *body;                 /* at most response_keep bytes */
    apr_size_t body_len;
    apr_interval_time_t elapsed;
    int aborted;                      /* ended by et_http_abort() */
} et_http_response_t;

typedef struct et_http_t et_http_t;

/**
 * A call's end. Called once for each call started, from et_http_run() or
 * et_http_abort(), on the thread that runs them. The response's strings
 * are in the call's pool; the client no longer uses that pool once this
 * is called, so the callback may destroy it.
 */
typedef void et_http_done_fn(void *baton, const et_http_response_t *resp);

/** Global init of libcurl; call once per process, before threads start. */
apr_status_t et_http_curl_global_init(void);

/**
 * A client whose handles and connections (kept alive, reused by later
 * calls) live in @a p. Thread safety: one thread starts, runs and aborts
 * the calls; et_http_wake() alone may be called from any thread.
 */
apr_status_t et_http_curl_create(et_http_t **h, apr_pool_t *p);

/**
 * Start a call; it proceeds inside et_http_run(). @a p holds the call's
 * state and its response and must live until @a done is called.
 */
apr_status_t et_http_start(et_http_t *h, apr_pool_t *p,
                           const et_http_request_t *req,
                           et_http_done_fn *done, void *baton);

/**
 * Move the calls on, calling @a done for each that ends. Waits at most
 * @a wait for something to happen (an answer, a timeout, et_http_wake())
 * when no call has ended yet.
 */
apr_status_t et_http_run(et_http_t *h, apr_interval_time_t wait);

/** Calls started and not yet ended. */
int et_http_running(const et_http_t *h);

/** End every call under way at once (their callbacks see aborted). */
void et_http_abort(et_http_t *h);

/** Make a waiting et_http_run() return; safe from any thread. */
void et_http_wake(et_http_t *h);

#endif /* ET_HTTP_H */
