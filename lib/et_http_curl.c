/* Licensed under the Apache License, Version 2.0. */
/*
 * et_http over libcurl. Handles are kept in a small free list so that their
 * connections are reused (keep-alive) by whichever worker thread asks next;
 * curl_easy_reset() keeps a handle's live connections while clearing the
 * options of the previous call.
 *
 * Fork safety: handles are created in the process that uses them (the
 * dispatcher, after its fork) and never cross a fork.
 */

#include <apr_strings.h>
#include <apr_thread_mutex.h>
#include <apr_lib.h>

#include <curl/curl.h>

#include "et_http.h"

typedef struct handle_t {
    CURL *curl;
    struct handle_t *next;
} handle_t;

typedef struct curl_client_t {
    apr_pool_t *pool;
    apr_thread_mutex_t *lock;         /* guards free_list and pool */
    handle_t *free_list;              /* idle handles, newest first */
    handle_t *spare;                  /* cells whose curl_easy_init failed */
} curl_client_t;

/* What one call collects; lives on the caller's stack and pool. */
typedef struct call_t {
    apr_pool_t *p;
    char *body;
    apr_size_t body_len;
    apr_size_t keep;
    const char *retry_after;
} call_t;

apr_status_t et_http_curl_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK
           ? APR_SUCCESS : APR_EGENERAL;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *baton)
{
    call_t *c = baton;
    size_t len = size * nmemb;

    /* Keep a bounded copy for the log and dead letters; read the rest so
     * that the connection stays usable. */
    if (c->body_len < c->keep) {
        apr_size_t take = c->keep - c->body_len;
        char *nb;

        if (take > len) {
            take = len;
        }
        nb = apr_palloc(c->p, c->body_len + take + 1);
        if (c->body_len) {
            memcpy(nb, c->body, c->body_len);
        }
        memcpy(nb + c->body_len, data, take);
        c->body_len += take;
        nb[c->body_len] = '\0';
        c->body = nb;
    }
    return len;
}

/* libcurl's progress callback: how a stopping dispatcher ends its calls
 * at once instead of being killed in the middle of them. */
static int on_progress(void *baton, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow)
{
    volatile int *abort = baton;

    return abort && *abort;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *baton)
{
    call_t *c = baton;
    size_t len = size * nmemb;
    static const char name[] = "retry-after:";

    if (len > sizeof(name) - 1 && strncasecmp(data, name, sizeof(name) - 1) == 0) {
        const char *v = data + sizeof(name) - 1;
        const char *end = data + len;

        while (v < end && apr_isspace(*v)) {
            ++v;
        }
        while (end > v && apr_isspace(end[-1])) {
            --end;
        }
        c->retry_after = apr_pstrmemdup(c->p, v, end - v);
    }
    else if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* a new response (after a 1xx): forget the previous one's headers */
        c->retry_after = NULL;
    }
    return len;
}

/* A cell is allocated once per handle and moves with it between the free
 * list and the caller, so the pool does not grow with the number of calls. */
static handle_t *take_handle(curl_client_t *cc)
{
    handle_t *h;

    apr_thread_mutex_lock(cc->lock);
    h = cc->free_list;
    if (h) {
        cc->free_list = h->next;
        apr_thread_mutex_unlock(cc->lock);
        h->next = NULL;
        curl_easy_reset(h->curl);
        return h;
    }
    if (cc->spare) {
        h = cc->spare;
        cc->spare = h->next;
        h->next = NULL;
    }
    else {
        h = apr_pcalloc(cc->pool, sizeof(*h));
    }
    apr_thread_mutex_unlock(cc->lock);
    h->curl = curl_easy_init();
    if (!h->curl) {
        /* keep the cell; a later call retries curl_easy_init */
        apr_thread_mutex_lock(cc->lock);
        h->next = cc->spare;
        cc->spare = h;
        apr_thread_mutex_unlock(cc->lock);
        return NULL;
    }
    return h;
}

static void give_handle(curl_client_t *cc, handle_t *h)
{
    apr_thread_mutex_lock(cc->lock);
    h->next = cc->free_list;
    cc->free_list = h;
    apr_thread_mutex_unlock(cc->lock);
}

static apr_status_t perform(et_http_t *http, apr_pool_t *p,
                            const et_http_request_t *req,
                            et_http_response_t *resp)
{
    curl_client_t *cc = http->baton;
    struct curl_slist *hdrs = NULL;
    char errbuf[CURL_ERROR_SIZE];
    call_t call;
    handle_t *handle;
    CURL *curl;
    CURLcode cr;
    long code = 0;
    apr_time_t start;
    int i;

    memset(resp, 0, sizeof(*resp));
    memset(&call, 0, sizeof(call));
    call.p = p;
    call.keep = req->response_keep;

    handle = take_handle(cc);
    if (!handle) {
        resp->error = "cannot create a libcurl handle";
        return APR_ENOMEM;
    }
    curl = handle->curl;
    errbuf[0] = '\0';

    for (i = 0; req->headers && i < req->headers->nelts; i++) {
        hdrs = curl_slist_append(hdrs, APR_ARRAY_IDX(req->headers, i,
                                                     const char *));
    }
    /* No 100-continue round trip: the receiver answers once, at the end. */
    hdrs = curl_slist_append(hdrs, "Expect:");

    curl_easy_setopt(curl, CURLOPT_URL, req->url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req->method);
    if (req->body) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)req->body_len);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req->body);
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    /* ids may be "." or ".." (escaped, but keep curl from normalising) */
    curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)apr_time_as_msec(req->connect_timeout));
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS,
                     (long)apr_time_as_msec(req->timeout));
    curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
    if (req->tls && !req->tls->verify) {
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    else {
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
    }
    if (req->tls) {
        /* blobs are copied by libcurl (CURL_BLOB_COPY) */
        struct curl_blob blob;

        if (req->tls->ca) {
            blob.data = (void *)req->tls->ca;
            blob.len = req->tls->ca_len;
            blob.flags = CURL_BLOB_COPY;
            curl_easy_setopt(curl, CURLOPT_CAINFO_BLOB, &blob);
            /* only these CAs: not also the system's directory */
            curl_easy_setopt(curl, CURLOPT_CAPATH, NULL);
        }
        if (req->tls->cert) {
            blob.data = (void *)req->tls->cert;
            blob.len = req->tls->cert_len;
            blob.flags = CURL_BLOB_COPY;
            curl_easy_setopt(curl, CURLOPT_SSLCERT_BLOB, &blob);
            curl_easy_setopt(curl, CURLOPT_SSLCERTTYPE, "PEM");
        }
        if (req->tls->key) {
            blob.data = (void *)req->tls->key;
            blob.len = req->tls->key_len;
            blob.flags = CURL_BLOB_COPY;
            curl_easy_setopt(curl, CURLOPT_SSLKEY_BLOB, &blob);
            curl_easy_setopt(curl, CURLOPT_SSLKEYTYPE, "PEM");
        }
    }
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &call);
    if (req->abort) {
        curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(curl, CURLOPT_XFERINFODATA, (void *)req->abort);
    }
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &call);

    start = apr_time_now();
    cr = curl_easy_perform(curl);
    resp->elapsed = apr_time_now() - start;

    if (cr == CURLE_OK) {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
        resp->status = (int)code;
    }
    else {
        resp->status = 0;
        resp->aborted = cr == CURLE_ABORTED_BY_CALLBACK;
        resp->error = apr_psprintf(p, "%s%s%s", curl_easy_strerror(cr),
                                   errbuf[0] ? ": " : "", errbuf);
    }
    resp->retry_after = call.retry_after;
    resp->body = call.body;
    resp->body_len = call.body_len;

    /* the handle must not point at this call's stack or headers */
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, NULL);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, NULL);
    curl_slist_free_all(hdrs);
    give_handle(cc, handle);
    return cr == CURLE_OK ? APR_SUCCESS : APR_EGENERAL;
}

static apr_status_t client_cleanup(void *data)
{
    curl_client_t *cc = data;
    handle_t *h;

    for (h = cc->free_list; h; h = h->next) {
        if (h->curl) {
            curl_easy_cleanup(h->curl);
            h->curl = NULL;
        }
    }
    cc->free_list = NULL;
    return APR_SUCCESS;
}

apr_status_t et_http_curl_create(et_http_t **ph, apr_pool_t *p)
{
    curl_client_t *cc = apr_pcalloc(p, sizeof(*cc));
    et_http_t *h = apr_pcalloc(p, sizeof(*h));
    apr_status_t rv;

    cc->pool = p;
    rv = apr_thread_mutex_create(&cc->lock, APR_THREAD_MUTEX_DEFAULT, p);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    apr_pool_cleanup_register(p, cc, client_cleanup, apr_pool_cleanup_null);
    h->perform = perform;
    h->baton = cc;
    *ph = h;
    return APR_SUCCESS;
}
