/* Licensed under the Apache License, Version 2.0. */
/*
 * et_http over libcurl's multi interface: every call of the dispatcher
 * runs on one thread, side by side, as mod_md's md_curl.c runs its
 * parallel requests. One thread waiting on all the sockets replaces a
 * thread per call blocked in curl_easy_perform() (which waits the same
 * way, one socket at a time): fewer context switches and less CPU per
 * call (docs/performance.md). The multi handle keeps the connections
 * alive for whichever call goes to the same host next.
 *
 * Easy handles are kept on a free list for reuse (curl_easy_reset(), as a
 * call ends, clears its options: a handle taken by another site's call
 * keeps none of the last one's CA, client key, proxy or proxy
 * credentials); a call's own state (its headers,
 * the answer collected, the callback) lives in the pool it was started
 * with.
 *
 * Thread safety: everything but et_http_wake() (curl_multi_wakeup(),
 * which libcurl makes safe from any thread) runs on the one thread that
 * owns the client. Fork safety: the client is created in the process that
 * uses it (the dispatcher, after its fork) and never crosses a fork.
 */

#include <apr_strings.h>
#include <apr_lib.h>
#include <apr_ring.h>

#include <curl/curl.h>

#include "et_http.h"

typedef struct handle_t {
    CURL *curl;
    struct handle_t *next;            /* in the free list */
} handle_t;

/* One call under way; allocated from the pool it was started with. */
typedef struct call_t {
    APR_RING_ENTRY(call_t) link;      /* in client->calls */
    apr_pool_t *p;
    handle_t *handle;
    struct curl_slist *hdrs;
    char errbuf[CURL_ERROR_SIZE];
    char *body;                       /* the answer, at most keep bytes */
    apr_size_t body_len;
    apr_size_t keep;
    const char *retry_after;
    const char *via;                  /* the proxy, for the error; NULL: none */
    apr_time_t start;
    et_http_done_fn *done;
    void *baton;
} call_t;

APR_RING_HEAD(call_ring, call_t);

struct et_http_t {
    apr_pool_t *pool;
    CURLM *multi;
    struct call_ring calls;           /* under way */
    int running;
    handle_t *free_list;              /* idle handles */
    handle_t *spare;                  /* cells whose curl_easy_init failed */
};

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
 * list and a call, so the pool does not grow with the number of calls. */
static handle_t *take_handle(et_http_t *h)
{
    handle_t *hd = h->free_list;

    if (hd) {
        h->free_list = hd->next;
        hd->next = NULL;
        return hd;                    /* reset when it was given back */
    }
    if (h->spare) {
        hd = h->spare;
        h->spare = hd->next;
        hd->next = NULL;
    }
    else {
        hd = apr_pcalloc(h->pool, sizeof(*hd));
    }
    hd->curl = curl_easy_init();
    if (!hd->curl) {
        /* keep the cell; a later call retries curl_easy_init */
        hd->next = h->spare;
        h->spare = hd;
        return NULL;
    }
    return hd;
}

static void set_tls(CURL *curl, const et_tls_t *tls)
{
    struct curl_blob blob;

    if (tls && !tls->verify) {
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    else {
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
    }
    if (!tls) {
        return;
    }
    /* blobs are copied by libcurl (CURL_BLOB_COPY) */
    blob.flags = CURL_BLOB_COPY;
    if (tls->ca) {
        blob.data = (void *)tls->ca;
        blob.len = tls->ca_len;
        curl_easy_setopt(curl, CURLOPT_CAINFO_BLOB, &blob);
        /* only these CAs: not also the system's directory */
        curl_easy_setopt(curl, CURLOPT_CAPATH, NULL);
    }
    if (tls->cert) {
        blob.data = (void *)tls->cert;
        blob.len = tls->cert_len;
        curl_easy_setopt(curl, CURLOPT_SSLCERT_BLOB, &blob);
        curl_easy_setopt(curl, CURLOPT_SSLCERTTYPE, "PEM");
    }
    if (tls->key) {
        blob.data = (void *)tls->key;
        blob.len = tls->key_len;
        curl_easy_setopt(curl, CURLOPT_SSLKEY_BLOB, &blob);
        curl_easy_setopt(curl, CURLOPT_SSLKEYTYPE, "PEM");
    }
}

/*
 * The proxy of a call; what its errors say about it (NULL: direct). Every
 * mode sets CURLOPT_PROXY but env: libcurl reads http_proxy, https_proxy,
 * all_proxy and no_proxy only while it is unset (NULL, as after
 * curl_easy_reset), and "" means no proxy whatever they say.
 */
static const char *set_proxy(CURL *curl, apr_pool_t *p, const et_proxy_t *px)
{
    if (!px || px->mode == ET_PROXY_OFF) {
        curl_easy_setopt(curl, CURLOPT_PROXY, "");
        return NULL;
    }
    if (px->mode == ET_PROXY_ENV) {
        return "the environment's proxy, if one applies";
    }
    /* an https receiver is reached through CONNECT (libcurl tunnels by
     * itself) and its certificate is checked as without a proxy */
    curl_easy_setopt(curl, CURLOPT_PROXY, px->url);
    /* the configured proxy is for every host: not the environment's
     * no_proxy, which libcurl would read while CURLOPT_NOPROXY is unset */
    curl_easy_setopt(curl, CURLOPT_NOPROXY, "");
    if (px->user) {
        /* given apart from the URL, so that no URL carries them */
        curl_easy_setopt(curl, CURLOPT_PROXYUSERNAME, px->user);
        curl_easy_setopt(curl, CURLOPT_PROXYPASSWORD,
                         px->password ? px->password : "");
        curl_easy_setopt(curl, CURLOPT_PROXYAUTH, (long)CURLAUTH_BASIC);
    }
    return apr_pstrcat(p, "proxy ", px->url, NULL);
}

apr_status_t et_http_start(et_http_t *h, apr_pool_t *p,
                           const et_http_request_t *req,
                           et_http_done_fn *done, void *baton)
{
    call_t *c = apr_pcalloc(p, sizeof(*c));
    CURL *curl;
    int i;

    c->handle = take_handle(h);
    if (!c->handle) {
        return APR_ENOMEM;
    }
    c->p = p;
    c->keep = req->response_keep;
    c->done = done;
    c->baton = baton;
    curl = c->handle->curl;

    for (i = 0; req->headers && i < req->headers->nelts; i++) {
        c->hdrs = curl_slist_append(c->hdrs, APR_ARRAY_IDX(req->headers, i,
                                                           const char *));
    }
    /* No 100-continue round trip: the receiver answers once, at the end. */
    c->hdrs = curl_slist_append(c->hdrs, "Expect:");

    curl_easy_setopt(curl, CURLOPT_PRIVATE, c);
    curl_easy_setopt(curl, CURLOPT_URL, req->url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req->method);
    if (req->body) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)req->body_len);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req->body);
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, c->hdrs);
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
    set_tls(curl, req->tls);
    c->via = set_proxy(curl, p, req->proxy);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, c);

    c->start = apr_time_now();
    if (curl_multi_add_handle(h->multi, curl) != CURLM_OK) {
        /* an idle handle keeps none of this call's options (its site's
         * CA or client key would go with the next call) */
        curl_easy_reset(curl);
        curl_slist_free_all(c->hdrs);
        c->handle->next = h->free_list;
        h->free_list = c->handle;
        return APR_EGENERAL;
    }
    APR_RING_ELEM_INIT(c, link);
    APR_RING_INSERT_TAIL(&h->calls, c, call_t, link);
    h->running++;
    return APR_SUCCESS;
}

/* A call is over: its handle goes back to the free list (pointing at
 * nothing of the call's), then the callback gets the response. */
static void end_call(et_http_t *h, call_t *c, CURLcode cr, int aborted)
{
    CURL *curl = c->handle->curl;
    et_http_response_t resp;
    long code = 0;

    memset(&resp, 0, sizeof(resp));
    resp.elapsed = apr_time_now() - c->start;
    if (aborted) {
        resp.aborted = 1;
        resp.error = "call interrupted";
    }
    else if (cr == CURLE_OK) {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
        if (code == 407 && c->via) {
            /* only a proxy answers 407 (to a plain http call; a tunnel's
             * is a failed CONNECT): the call did not reach the receiver,
             * so it is retried like any call that could not connect */
            resp.error = apr_psprintf(c->p, "the proxy refused the call: "
                                      "HTTP 407 Proxy Authentication "
                                      "Required (through %s)", c->via);
        }
        else {
            resp.status = (int)code;
        }
    }
    else {
        resp.error = apr_psprintf(c->p, "%s%s%s%s%s%s",
                                  curl_easy_strerror(cr),
                                  c->errbuf[0] ? ": " : "", c->errbuf,
                                  c->via ? " (through " : "",
                                  c->via ? c->via : "", c->via ? ")" : "");
    }
    resp.retry_after = c->retry_after;
    resp.body = c->body;
    resp.body_len = c->body_len;

    curl_multi_remove_handle(h->multi, curl);
    /* an idle handle keeps no pointer into the call's pool or headers */
    curl_easy_reset(curl);
    curl_slist_free_all(c->hdrs);
    c->hdrs = NULL;
    c->handle->next = h->free_list;
    h->free_list = c->handle;
    c->handle = NULL;
    APR_RING_REMOVE(c, link);
    h->running--;

    c->done(c->baton, &resp);
}

/* Hand every finished call to its callback; how many there were. */
static int collect(et_http_t *h)
{
    CURLMsg *msg;
    int left, n = 0;

    while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
        call_t *c = NULL;

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
        if (c) {
            end_call(h, c, msg->data.result, 0);
            n++;
        }
    }
    return n;
}

apr_status_t et_http_run(et_http_t *h, apr_interval_time_t wait)
{
    int still = 0, ms;
    CURLMcode mc;

    /* sends what was just started, reads what has come in */
    mc = curl_multi_perform(h->multi, &still);
    if (collect(h) || mc != CURLM_OK) {
        return mc == CURLM_OK ? APR_SUCCESS : APR_EGENERAL;
    }
    /* libcurl shortens the wait to its own next timeout */
    ms = wait > 0 ? (int)((wait + 999) / 1000) : 0;
    mc = curl_multi_poll(h->multi, NULL, 0, ms, NULL);
    if (mc == CURLM_OK) {
        mc = curl_multi_perform(h->multi, &still);
    }
    collect(h);
    return mc == CURLM_OK ? APR_SUCCESS : APR_EGENERAL;
}

int et_http_running(const et_http_t *h)
{
    return h->running;
}

void et_http_abort(et_http_t *h)
{
    while (!APR_RING_EMPTY(&h->calls, call_t, link)) {
        end_call(h, APR_RING_FIRST(&h->calls), CURLE_OK, 1);
    }
}

void et_http_wake(et_http_t *h)
{
    curl_multi_wakeup(h->multi);
}

static apr_status_t client_cleanup(void *data)
{
    et_http_t *h = data;
    handle_t *hd;

    /* calls still under way belong to pools that may be gone: their
     * handles leave the multi handle without a callback */
    while (!APR_RING_EMPTY(&h->calls, call_t, link)) {
        call_t *c = APR_RING_FIRST(&h->calls);

        curl_multi_remove_handle(h->multi, c->handle->curl);
        curl_slist_free_all(c->hdrs);
        curl_easy_cleanup(c->handle->curl);
        APR_RING_REMOVE(c, link);
    }
    for (hd = h->free_list; hd; hd = hd->next) {
        curl_easy_cleanup(hd->curl);
        hd->curl = NULL;
    }
    h->free_list = NULL;
    curl_multi_cleanup(h->multi);
    h->multi = NULL;
    return APR_SUCCESS;
}

apr_status_t et_http_curl_create(et_http_t **ph, apr_pool_t *p)
{
    et_http_t *h = apr_pcalloc(p, sizeof(*h));

    h->pool = p;
    h->multi = curl_multi_init();
    if (!h->multi) {
        return APR_ENOMEM;
    }
    APR_RING_INIT(&h->calls, call_t, link);
    /* before the subpools go: the calls' pools may be among them */
    apr_pool_pre_cleanup_register(p, h, client_cleanup);
    *ph = h;
    return APR_SUCCESS;
}
