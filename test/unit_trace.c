/* Licensed under the Apache License, Version 2.0. */
/*
 * unit_trace.c: W3C Trace Context (et_trace.c) and what a call adds of an
 * event's context to its request (et_call_event).
 */
#include <string.h>

#include <apr_strings.h>

#include "et_trace.h"
#include "et_call.h"
#include "unit_tests.h"

#define TP_OK "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

START_TEST(a_valid_traceparent_is_taken_apart)
{
    et_traceparent_t tp;

    ck_assert(et_traceparent_parse(TP_OK, &tp));
    ck_assert_str_eq(tp.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    ck_assert_str_eq(tp.parent_id, "00f067aa0ba902b7");
    ck_assert_int_eq(tp.flags, 1);
    ck_assert(et_traceparent_parse(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", &tp));
    ck_assert_int_eq(tp.flags, 0);
    /* flags other than sampled are not passed on */
    ck_assert(et_traceparent_parse(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03", &tp));
    ck_assert_int_eq(tp.flags, 1);
    /* a later version: its first four fields, read as 00's */
    ck_assert(et_traceparent_parse(
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09", &tp));
    ck_assert_int_eq(tp.flags, 1);
    ck_assert(et_traceparent_parse(
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever",
        &tp));
    ck_assert_str_eq(tp.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
}
END_TEST

START_TEST(an_invalid_traceparent_is_refused)
{
    static const char *const bad[] = {
        "",
        "00",
        /* all-zero ids */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        /* uppercase hex */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        /* version ff, a version that is not hex */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        /* version 00 is exactly 55 characters */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        /* a later version: more must follow a '-' */
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        /* short fields, wrong separators, flags not hex */
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0z",
        /* two traceparent lines joined */
        TP_OK "," TP_OK,
        NULL
    };
    et_traceparent_t tp;
    int i;

    ck_assert(!et_traceparent_parse(NULL, &tp));
    for (i = 0; bad[i]; i++) {
        ck_assert_msg(!et_traceparent_parse(bad[i], &tp), "accepted: '%s'",
                      bad[i]);
    }
}
END_TEST

START_TEST(a_fresh_traceparent_is_valid_and_new)
{
    const char *a = et_traceparent_new(ut_pool);
    const char *b = et_traceparent_new(ut_pool);
    et_traceparent_t ta, tb;

    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(strlen(a), ET_TRACEPARENT_LEN);
    ck_assert(et_traceparent_parse(a, &ta));
    ck_assert(et_traceparent_parse(b, &tb));
    ck_assert_int_eq(ta.flags, 1);
    ck_assert_str_eq(a + 53, "01");
    ck_assert_str_ne(ta.trace_id, tb.trace_id);
    ck_assert_str_ne(ta.parent_id, tb.parent_id);
}
END_TEST

START_TEST(an_attempt_keeps_the_trace_and_has_its_own_parent)
{
    const char *t1 = et_traceparent_attempt(ut_pool, TP_OK, "x",
                                            APR_UINT64_C(0x0123456789abcdef));
    const char *t2 = et_traceparent_attempt(ut_pool, TP_OK, "x", 1);
    const char *txn = "0192f0c1a2b3c4d5e6f708192a3b4c5d";

    ck_assert_str_eq(t1, "00-4bf92f3577b34da6a3ce929d0e0e4736-"
                         "0123456789abcdef-01");
    ck_assert_str_eq(t2, "00-4bf92f3577b34da6a3ce929d0e0e4736-"
                         "0000000000000001-01");
    /* not sampled stays not sampled */
    ck_assert_str_eq(et_traceparent_attempt(ut_pool,
                     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
                     NULL, 0xff), "00-4bf92f3577b34da6a3ce929d0e0e4736-"
                                  "00000000000000ff-00");
    /* stored without one (an older outbox): the txn is the trace id */
    ck_assert_str_eq(et_traceparent_attempt(ut_pool, NULL, txn, 2),
                     "00-0192f0c1a2b3c4d5e6f708192a3b4c5d-"
                     "0000000000000002-01");
    ck_assert_str_eq(et_trace_id(ut_pool, NULL, txn), txn);
    ck_assert_str_eq(et_trace_id(ut_pool, TP_OK, txn),
                     "4bf92f3577b34da6a3ce929d0e0e4736");
    ck_assert_ptr_null(et_traceparent_attempt(ut_pool, NULL, "short", 2));
    ck_assert_ptr_null(et_trace_id(ut_pool, NULL, NULL));
    /* zero is no parent id */
    ck_assert_ptr_null(et_traceparent_attempt(ut_pool, TP_OK, txn, 0));
}
END_TEST

START_TEST(tracestate_is_printable_and_bounded)
{
    char *longest = apr_palloc(ut_pool, ET_TRACESTATE_MAX + 2);

    ck_assert(et_tracestate_ok("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
    ck_assert(!et_tracestate_ok(""));
    ck_assert(!et_tracestate_ok(NULL));
    ck_assert(!et_tracestate_ok("a=b\r\nX-Evil: 1"));
    ck_assert(!et_tracestate_ok("a=\x7f"));
    memset(longest, 'a', ET_TRACESTATE_MAX);
    longest[ET_TRACESTATE_MAX] = '\0';
    ck_assert(et_tracestate_ok(longest));
    longest[ET_TRACESTATE_MAX] = 'a';
    longest[ET_TRACESTATE_MAX + 1] = '\0';
    ck_assert(!et_tracestate_ok(longest));
}
END_TEST

static int count_prefix(const et_http_request_t *req, const char *prefix,
                        const char **last)
{
    int i, n = 0;

    for (i = 0; i < req->headers->nelts; i++) {
        const char *h = APR_ARRAY_IDX(req->headers, i, const char *);

        if (!strncmp(h, prefix, strlen(prefix))) {
            n++;
            *last = h;
        }
    }
    return n;
}

/* A call carries the event's trace (its own parent id), its tracestate and
 * its stored headers, besides the site's own. */
START_TEST(a_call_carries_the_event_s_context)
{
    et_site_t site;
    et_event_t ev;
    et_http_request_t req;
    const char *h = NULL, *tp;

    memset(&site, 0, sizeof(site));
    memset(&ev, 0, sizeof(ev));
    site.headers = apr_array_make(ut_pool, 1, sizeof(const char *));
    APR_ARRAY_PUSH(site.headers, const char *) = "X-Tenant: acme";
    ev.txn = "0192f0c1a2b3c4d5e6f708192a3b4c5d";
    ev.traceparent = TP_OK;
    ev.tracestate = "congo=t61rcWkgMzE";
    ev.headers = "X-Admin-User: alice\nX-Request-Id: r-1";
    et_call_request(ut_pool, &site, "PUT", "http://r/h", "application/json",
                    ev.txn, "{}", 2, &req);
    tp = et_call_event(ut_pool, &ev, 0x2a, &req);
    ck_assert_str_eq(tp, "00-4bf92f3577b34da6a3ce929d0e0e4736-"
                         "000000000000002a-01");
    ck_assert_int_eq(count_prefix(&req, "traceparent: ", &h), 1);
    ck_assert_str_eq(h, apr_pstrcat(ut_pool, "traceparent: ", tp, NULL));
    ck_assert_int_eq(count_prefix(&req, "tracestate: ", &h), 1);
    ck_assert_str_eq(h, "tracestate: congo=t61rcWkgMzE");
    ck_assert_int_eq(count_prefix(&req, "X-Admin-User: ", &h), 1);
    ck_assert_str_eq(h, "X-Admin-User: alice");
    ck_assert_int_eq(count_prefix(&req, "X-Request-Id: ", &h), 1);
    ck_assert_str_eq(h, "X-Request-Id: r-1");
    ck_assert_int_eq(count_prefix(&req, "X-Tenant: ", &h), 1);

    /* none stored: a trace of the txn, no tracestate, no extra header */
    ev.traceparent = ev.tracestate = ev.headers = NULL;
    et_call_request(ut_pool, &site, "PUT", "http://r/h", "application/json",
                    ev.txn, "{}", 2, &req);
    tp = et_call_event(ut_pool, &ev, 7, &req);
    ck_assert_str_eq(tp, "00-0192f0c1a2b3c4d5e6f708192a3b4c5d-"
                         "0000000000000007-01");
    ck_assert_int_eq(count_prefix(&req, "tracestate", &h), 0);
    ck_assert_int_eq(count_prefix(&req, "X-Admin-User", &h), 0);
    ck_assert_int_eq(req.headers->nelts, 5);  /* Accept, UA, CT, X-Tenant,
                                               * traceparent */
}
END_TEST

Suite *trace_suite(void)
{
    Suite *s = suite_create("trace");
    TCase *tc = tcase_create("traceparent");

    tcase_add_checked_fixture(tc, ut_setup, ut_teardown);
    tcase_add_test(tc, a_valid_traceparent_is_taken_apart);
    tcase_add_test(tc, an_invalid_traceparent_is_refused);
    tcase_add_test(tc, a_fresh_traceparent_is_valid_and_new);
    tcase_add_test(tc, an_attempt_keeps_the_trace_and_has_its_own_parent);
    tcase_add_test(tc, tracestate_is_printable_and_bounded);
    tcase_add_test(tc, a_call_carries_the_event_s_context);
    suite_add_tcase(s, tc);
    return s;
}
