/* Licensed under the Apache License, Version 2.0. */
/**
 * @file et_http.h
 * @brief The HTTP client interface the dispatcher calls; et_http_curl.c is
 *        its libcurl implementation (the way mod_md keeps curl behind
 *        md_http.h).
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

typedef struct et_http_request_t {
    const char *method;
    const char *url;
    apr_array_header_t *headers;      /* of const char *, "Name: value" */
    const char *body;
    apr_size_t body_len;
    apr_interval_time_t connect_timeout;
    apr_interval_time_t timeout;
    apr_size_t response_keep;         /* bytes of the answer's body kept */
    const et_tls_t *tls;              /* NULL: verify with the system store */
    volatile int *abort;              /* non-zero: give up at once */
} et_http_request_t;

typedef struct et_http_response_t {
    int status;                       /* 0: no HTTP answer (see error) */
    const char *error;                /* transport error, NULL otherwise */
    const char *retry_after;          /* Retry-After header, if any */
    const char *body;                 /* at most response_keep bytes */
    apr_size_t body_len;
    apr_interval_time_t elapsed;
    int aborted;                      /* stopped because *abort was set */
} et_http_response_t;

typedef struct et_http_t et_http_t;

/**
 * Thread safety: perform() may be called from many threads at once; each
 * call takes a connection handle from the client's own pool of handles.
 */
struct et_http_t {
    apr_status_t (*perform)(et_http_t *h, apr_pool_t *p,
                            const et_http_request_t *req,
                            et_http_response_t *resp);
    void *baton;
};

/** Global init of libcurl; call once per process, before threads start. */
apr_status_t et_http_curl_global_init(void);
/** A libcurl client whose handles (and their connections) live in @a p. */
apr_status_t et_http_curl_create(et_http_t **h, apr_pool_t *p);

#endif /* ET_HTTP_H */
