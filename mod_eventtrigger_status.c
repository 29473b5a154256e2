/* Licensed under the Apache License, Version 2.0. */
/*
 * SetHandler eventtrigger-status: what the outbox holds, as HTML for
 * people and as JSON (?json) for machines.
 */

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"

#include <apr_strings.h>
#include <jansson.h>

#include "mod_eventtrigger.h"
#include "et_json.h"

static int want_json(const request_rec *r)
{
    const char *a = r->args;

    /* "?json" or "json=..." among the arguments */
    while (a && *a) {
        if (!strncmp(a, "json", 4) && (a[4] == '\0' || a[4] == '&'
                                       || a[4] == '=')) {
            return 1;
        }
        a = strchr(a, '&');
        a = a ? a + 1 : NULL;
    }
    return 0;
}

int et_status_handler(request_rec *r)
{
    et_outbox_counts_t c;
    et_conn_t *conn;
    apr_status_t rv;
    apr_time_t now = apr_time_now();
    apr_int64_t age;

    if (!r->handler || strcmp(r->handler, ET_STATUS_HANDLER)) {
        return DECLINED;
    }
    r->allowed = (AP_METHOD_BIT << M_GET);
    if (r->method_number != M_GET) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    if ((rv = et_conn_get(&conn, r)) != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, r,
                      "ET00050: status: no outbox connection");
        return HTTP_SERVICE_UNAVAILABLE;
    }
    rv = et_outbox_counts(conn->ob, &c);
    if (rv != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "ET00051: status: %s", et_outbox_error(conn->ob));
    }
    et_conn_put(conn, rv != APR_SUCCESS);
    if (rv != APR_SUCCESS) {
        return HTTP_SERVICE_UNAVAILABLE;
    }
    age = c.oldest_pending ? apr_time_sec(now - c.oldest_pending) : 0;

    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    if (want_json(r)) {
        json_t *j = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}",
                              "pending", (json_int_t)c.pending,
                              "in_flight", (json_int_t)c.leased,
                              "delivered", (json_int_t)c.delivered,
                              "dead", (json_int_t)c.dead,
                              "failed", (json_int_t)c.failed,
                              "oldest_pending_age_s", (json_int_t)age);
        apr_size_t len;
        const char *text;

        if (!j) {
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        et_json_pool_own(r->pool, j);
        text = et_json_dump(r->pool, j, &len);
        ap_set_content_type(r, "application/json");
        if (!r->header_only) {
            ap_rwrite(text, (int)len, r);
            ap_rputs("\n", r);
        }
        return OK;
    }

    ap_set_content_type(r, "text/html; charset=utf-8");
    if (r->header_only) {
        return OK;
    }
    ap_rputs(DOCTYPE_HTML_4_01
             "<html><head><title>Event Trigger status</title></head>\n"
             "<body><h1>Event Trigger status</h1>\n<table>\n", r);
    ap_rprintf(r, "<tr><th align=\"left\">pending</th><td>%" APR_INT64_T_FMT
               "</td></tr>\n", c.pending);
    ap_rprintf(r, "<tr><th align=\"left\">in flight</th><td>%"
               APR_INT64_T_FMT "</td></tr>\n", c.leased);
    ap_rprintf(r, "<tr><th align=\"left\">delivered</th><td>%"
               APR_INT64_T_FMT "</td></tr>\n", c.delivered);
    ap_rprintf(r, "<tr><th align=\"left\">dead</th><td>%" APR_INT64_T_FMT
               "</td></tr>\n", c.dead);
    ap_rprintf(r, "<tr><th align=\"left\">failed at capture</th><td>%"
               APR_INT64_T_FMT "</td></tr>\n", c.failed);
    ap_rprintf(r, "<tr><th align=\"left\">oldest pending</th><td>%"
               APR_INT64_T_FMT " s</td></tr>\n", age);
    ap_rputs("</table></body></html>\n", r);
    return OK;
}
