/* Licensed under the Apache License, Version 2.0. */
/*
 * unit_consoles.c: consoles of every shape (issue 16): JSON pointers,
 * envelopes, answers without the id, answers that are not JSON, and
 * JSON-RPC (method mapping, requests, batches, errors).
 */
#include <string.h>

#include <apr_strings.h>

#include "unit_tests.h"
#include "et_capture.h"
#include "et_json.h"
#include "et_jsonrpc.h"

#define ENDPOINT "https://cb.example.com/hooks"

static et_site_t site;
static et_capture_t cap;

static void setup(void)
{
    ut_setup();
    ut_capture_fixture(&site, &cap, ENDPOINT, ET_EV_UPDATE,
                       "/admin/members/42");
}

static void body(const char *b)
{
    ut_capture_body(&cap, b);
}

static et_event_t *capture(void)
{
    et_event_t *ev = NULL;

    ck_assert_int_eq(et_capture_to_event(ut_pool, &cap, &ev), APR_SUCCESS);
    ck_assert_ptr_nonnull(ev);
    return ev;
}

static et_event_t *sent(const char *id, const char *json_body)
{
    et_event_t *ev = capture();

    ck_assert_msg(ev->state == ET_ST_PENDING, "failed: %s", ev->error);
    ck_assert_str_eq(ev->oid, id);
    if (json_body) {
        ck_assert_str_eq(ev->body, json_body);
    }
    return ev;
}

static et_event_t *not_sent(const char *why)
{
    et_event_t *ev = capture();

    ck_assert_int_eq(ev->state, ET_ST_FAILED);
    ck_assert_msg(strstr(ev->error, why) != NULL, "error '%s' lacks '%s'",
                  ev->error, why);
    return ev;
}

START_TEST(test_pointer_check)
{
    ck_assert_ptr_null(et_json_pointer_check(""));
    ck_assert_ptr_null(et_json_pointer_check("/data"));
    ck_assert_ptr_null(et_json_pointer_check("/a~1b/~0c/0"));
    ck_assert_ptr_nonnull(et_json_pointer_check("data"));
    ck_assert_ptr_nonnull(et_json_pointer_check("/a~2"));
    ck_assert_ptr_nonnull(et_json_pointer_check("/a~"));
}
END_TEST

START_TEST(test_pointer_get)
{
    json_t *j = ut_json("{\"data\":{\"a/b\":1,\"m~n\":2,\"\":3,"
                        "\"list\":[10,{\"x\":\"y\"}]},\"0\":4}");

    ck_assert_ptr_eq(et_json_pointer_get(j, ""), j);
    ck_assert_ptr_eq(et_json_pointer_get(j, NULL), j);
    ck_assert_int_eq(json_integer_value(et_json_pointer_get(j, "/data/a~1b")),
                     1);
    ck_assert_int_eq(json_integer_value(et_json_pointer_get(j, "/data/m~0n")),
                     2);
    ck_assert_int_eq(json_integer_value(et_json_pointer_get(j, "/data/")), 3);
    ck_assert_int_eq(json_integer_value(et_json_pointer_get(j, "/0")), 4);
    ck_assert_str_eq(json_string_value(et_json_pointer_get(j,
                                                           "/data/list/1/x")),
                     "y");
    /* no leading zeros, no "-", nothing past the end */
    ck_assert_ptr_null(et_json_pointer_get(j, "/data/list/01"));
    ck_assert_ptr_null(et_json_pointer_get(j, "/data/list/-"));
    ck_assert_ptr_null(et_json_pointer_get(j, "/data/list/2"));
    ck_assert_ptr_null(et_json_pointer_get(j, "/data/list/0/x"));
    ck_assert_ptr_null(et_json_pointer_get(j, "/missing"));
    ck_assert_ptr_null(et_json_pointer_get(j, "data"));
}
END_TEST

START_TEST(test_pointer_set)
{
    json_t *j = ut_json("{\"a\":{\"b\":1},\"s\":\"x\"}");
    const char *text;

    ck_assert_int_eq(et_json_pointer_set(j, "/a/c", json_string("v")), 0);
    ck_assert_int_eq(et_json_pointer_set(j, "/n/e~1w", json_integer(2)), 0);
    ck_assert_int_eq(et_json_pointer_set(j, "/s/x", json_integer(3)), -1);
    ck_assert_int_eq(et_json_pointer_set(j, "", json_integer(3)), -1);
    text = et_json_dump(ut_pool, j, NULL);
    ck_assert_str_eq(text, "{\"a\":{\"b\":1,\"c\":\"v\"},\"s\":\"x\","
                           "\"n\":{\"e/w\":2}}");
}
END_TEST

/* json-server answers a DELETE with {}: the path names the object */
START_TEST(test_answer_without_id)
{
    cap.event = ET_EV_DELETE;
    body("{}");
    sent("42", "{\"id\":\"42\",\"object_type\":\"member\"}");
    /* an update answered with the changed fields only */
    cap.event = ET_EV_UPDATE;
    cap.uri_path = "/members/7/";
    body("{\"email\":\"a@b\"}");
    sent("7", "{\"email\":\"a@b\",\"id\":\"7\",\"object_type\":\"member\"}");
    /* the id under a pointer's name */
    cap.id_field = "/attributes/apikey";
    body("{\"attributes\":{\"status\":\"on\"}}");
    sent("7", "{\"attributes\":{\"status\":\"on\",\"apikey\":\"7\"},"
              "\"object_type\":\"member\"}");
    /* the glue's id (a <LocationMatch> group) wins over the path */
    cap.id_field = "id";
    cap.uri_path = "/members/7/edit";
    cap.path_id = "7";
    body("{\"email\":\"a@b\"}");
    sent("7", NULL);
    /* a create still needs the answer's id or its Location */
    cap.event = ET_EV_CREATE;
    cap.path_id = NULL;
    cap.uri_path = "/members";
    body("{\"email\":\"a@b\"}");
    not_sent("saved object has no 'id' field and no Location names it");
    cap.location = "/members/99";
    sent("99", "{\"email\":\"a@b\",\"id\":\"99\",\"object_type\":\"member\"}");
    /* a path without a segment names nothing */
    cap.event = ET_EV_DELETE;
    cap.uri_path = "/";
    body("{}");
    not_sent("the request path names no id");
}
END_TEST

START_TEST(test_envelopes)
{
    site.format = ET_FMT_JSON;
    cap.event = ET_EV_CREATE;
    cap.object_ptr = "/data";
    body("{\"data\":{\"id\":5,\"type\":\"members\",\"name\":\"n\"},"
         "\"meta\":{}}");
    sent("5", "{\"id\":5,\"type\":\"members\",\"name\":\"n\","
              "\"object_type\":\"member\"}");
    /* Rails-style root */
    cap.object_ptr = "/member";
    body("{\"member\":{\"id\":\"m1\",\"object_type\":\"member\"}}");
    sent("m1", "{\"id\":\"m1\",\"object_type\":\"member\"}");
    /* an array root, a pointer into it */
    cap.object_ptr = "/0";
    body("[{\"id\":3}]");
    sent("3", NULL);
    /* the id deeper in the object */
    cap.object_ptr = "/data";
    cap.id_field = "/attributes/apikey";
    body("{\"data\":{\"attributes\":{\"apikey\":\"k1\"}}}");
    sent("k1", NULL);
    /* the form format gets the same object */
    site.format = ET_FMT_FORM;
    sent("k1", "attributes[apikey]=k1&object_type=member");
    site.format = ET_FMT_JSON;
    /* found nothing, found a non-object */
    cap.id_field = "id";
    body("{\"result\":{\"id\":1}}");
    ck_assert_str_eq(not_sent("finds nothing")->error,
                     "EventTriggerObject /data finds nothing in the answer");
    body("{\"data\":[1,2]}");
    ck_assert_str_eq(not_sent("not an object")->error,
                     "EventTriggerObject /data finds a JSON array in the "
                     "answer, not an object");
    /* without a pointer an array answer is still refused */
    cap.object_ptr = NULL;
    body("[{\"id\":3}]");
    not_sent("body is a JSON array, not an object");
}
END_TEST

START_TEST(test_not_json)
{
    ck_assert(et_capture_is_json_type(NULL));
    ck_assert(et_capture_is_json_type("application/json"));
    ck_assert(et_capture_is_json_type("Application/JSON; charset=utf-8"));
    ck_assert(et_capture_is_json_type("application/vnd.api+json"));
    ck_assert(et_capture_is_json_type("text/json"));
    ck_assert(!et_capture_is_json_type("text/html; charset=utf-8"));
    ck_assert(!et_capture_is_json_type("application/jsonx"));
    ck_assert(!et_capture_is_json_type("text/plain"));

    cap.content_type = "text/html; charset=utf-8";
    body("<!DOCTYPE html><html>...</html>");
    ck_assert_str_eq(not_sent("not JSON")->error,
                     "answer is text/html, not JSON");
    /* the type is escaped for the log and cut short */
    cap.content_type = "text/\x1b[31mred";
    ck_assert_ptr_null(strchr(not_sent("not JSON")->error, '\x1b'));
    /* a bodiless answer is named by its path, whatever its type */
    cap.content_type = "text/html";
    body("");
    sent("42", NULL);
}
END_TEST

START_TEST(test_rpc_method)
{
    et_object_e o;
    et_event_e e;

    ck_assert(et_rpc_method("member.create", &o, &e));
    ck_assert_int_eq(o, ET_OBJ_MEMBER);
    ck_assert_int_eq(e, ET_EV_CREATE);
    ck_assert(et_rpc_method("package_key.delete", &o, &e));
    ck_assert_int_eq(o, ET_OBJ_PACKAGE_KEY);
    ck_assert_int_eq(e, ET_EV_DELETE);
    ck_assert(et_rpc_method("key.update", &o, &e));
    ck_assert_int_eq(o, ET_OBJ_KEY);
    ck_assert_int_eq(e, ET_EV_UPDATE);
    ck_assert(!et_rpc_method("member.fetch", &o, &e));
    ck_assert(!et_rpc_method("member.query", &o, &e));
    ck_assert(!et_rpc_method("widget.create", &o, &e));
    ck_assert(!et_rpc_method("off.create", &o, &e));
    ck_assert(!et_rpc_method("create", &o, &e));
    ck_assert(!et_rpc_method(".create", &o, &e));
    ck_assert(!et_rpc_method("member.create.x", &o, &e));
    ck_assert(!et_rpc_method("averyveryverylongobjectname.create", &o, &e));
    ck_assert(!et_rpc_method(NULL, &o, &e));
}
END_TEST

static apr_array_header_t *request(const char *text, int *batch)
{
    apr_array_header_t *calls = NULL;
    const char *err = NULL;

    ck_assert_msg(et_rpc_parse_request(ut_pool, text, strlen(text), 16,
                                       &calls, batch, &err) == APR_SUCCESS,
                  "%s", err ? err : "?");
    return calls;
}

START_TEST(test_rpc_request)
{
    apr_array_header_t *calls;
    const et_rpc_call_t *c;
    const char *err;
    int batch;

    calls = request("{\"method\":\"member.create\",\"params\":[{\"u\":1}],"
                    "\"id\":1}", &batch);
    ck_assert_int_eq(batch, 0);
    ck_assert_int_eq(calls->nelts, 1);
    c = APR_ARRAY_IDX(calls, 0, const et_rpc_call_t *);
    ck_assert_int_eq(c->object, ET_OBJ_MEMBER);
    ck_assert_int_eq(c->event, ET_EV_CREATE);
    ck_assert_int_eq(json_integer_value(c->id), 1);
    ck_assert(json_is_object(c->param));

    /* a batch keeps its order and leaves out what is no event */
    calls = request("[{\"jsonrpc\":\"2.0\",\"method\":\"key.delete\","
                    "\"params\":[\"k1\"],\"id\":\"a\"},"
                    "{\"jsonrpc\":\"2.0\",\"method\":\"member.fetch\","
                    "\"params\":[\"m\"],\"id\":\"b\"},"
                    "{\"jsonrpc\":\"2.0\",\"method\":\"member.update\","
                    "\"params\":{\"username\":\"u\"},\"id\":\"c\"},"
                    "{\"jsonrpc\":\"2.0\",\"method\":\"member.delete\","
                    "\"params\":[\"u\"]}]", &batch);
    ck_assert_int_eq(batch, 1);
    ck_assert_int_eq(calls->nelts, 3);
    c = APR_ARRAY_IDX(calls, 0, const et_rpc_call_t *);
    ck_assert_str_eq(c->method, "key.delete");
    ck_assert_str_eq(json_string_value(c->param), "k1");
    c = APR_ARRAY_IDX(calls, 1, const et_rpc_call_t *);
    ck_assert_str_eq(c->method, "member.update");
    ck_assert(json_is_object(c->param));
    c = APR_ARRAY_IDX(calls, 2, const et_rpc_call_t *);
    ck_assert_ptr_null(c->id);            /* a notification */

    /* 1.0: an id of null is a notification */
    calls = request("{\"method\":\"key.create\",\"params\":[],\"id\":null}",
                    &batch);
    ck_assert_ptr_null(APR_ARRAY_IDX(calls, 0, const et_rpc_call_t *)->id);

    /* an enrichment replaces an object param only */
    {
        et_rpc_call_t *c0, *c1;

        calls = request("[{\"method\":\"member.delete\",\"params\":[\"u1\"],"
                        "\"id\":1},{\"method\":\"member.update\",\"params\":"
                        "[{\"a\":1},2],\"id\":2}]", &batch);
        c0 = APR_ARRAY_IDX(calls, 0, et_rpc_call_t *);
        c1 = APR_ARRAY_IDX(calls, 1, et_rpc_call_t *);
        ck_assert_int_eq(et_rpc_set_param(c0, json_object()), -1);
        ck_assert_int_eq(et_rpc_set_param(c1, json_pack("{s:i}", "b", 2)), 0);
        ck_assert_str_eq(et_json_dump(ut_pool, c1->root, NULL),
                         "[{\"method\":\"member.delete\",\"params\":[\"u1\"],"
                         "\"id\":1},{\"method\":\"member.update\",\"params\":"
                         "[{\"b\":2},2],\"id\":2}]");
    }

    /* not JSON-RPC at all */
    ck_assert_int_eq(et_rpc_parse_request(ut_pool, "{\"a\":1}", 7, 16, &calls,
                                          &batch, &err), APR_EINVAL);
    ck_assert_str_eq(err, "JSON-RPC request: a JSON-RPC call without a "
                          "method");
    ck_assert_int_eq(et_rpc_parse_request(ut_pool, "[1]", 3, 16, &calls,
                                          &batch, &err), APR_EINVAL);
    ck_assert_str_eq(err, "JSON-RPC batch, call 1: a JSON-RPC call that is "
                          "not an object");
    ck_assert_int_eq(et_rpc_parse_request(ut_pool, "{", 1, 16, &calls,
                                          &batch, &err), APR_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "malformed JSON"));
}
END_TEST

static apr_array_header_t *rpc(const char *req, const char *answer)
{
    apr_array_header_t *calls, *events = NULL;
    int batch;

    calls = request(req, &batch);
    body(answer);
    ck_assert_int_eq(et_capture_jsonrpc(ut_pool, &cap, calls, batch, &events),
                     APR_SUCCESS);
    ck_assert_ptr_nonnull(events);
    return events;
}

static const et_event_t *ev_at(apr_array_header_t *events, int i)
{
    ck_assert_int_lt(i, events->nelts);
    return APR_ARRAY_IDX(events, i, const et_event_t *);
}

START_TEST(test_rpc_capture)
{
    apr_array_header_t *ev;
    const et_event_t *e;

    /* Mashery V2: members are named by username, keys by apikey */
    static const char *const v2[] = { NULL, "username", NULL, "apikey",
                                      NULL };

    cap.id_fields = v2;
    ev = rpc("{\"method\":\"member.create\",\"params\":[{\"username\":\"u1\"}],"
             "\"id\":1}",
             "{\"result\":{\"username\":\"u1\",\"email\":\"e\","
             "\"object_type\":\"member\"},\"error\":null,\"id\":1}");
    ck_assert_int_eq(ev->nelts, 1);
    e = ev_at(ev, 0);
    ck_assert_int_eq(e->state, ET_ST_PENDING);
    ck_assert_int_eq(e->object, ET_OBJ_MEMBER);
    ck_assert_int_eq(e->event, ET_EV_CREATE);
    ck_assert_str_eq(e->oid, "u1");
    ck_assert_str_eq(e->body, "{\"username\":\"u1\",\"email\":\"e\","
                              "\"object_type\":\"member\"}");
    ck_assert_ptr_nonnull(strstr(e->url, "/v1/member/u1?event=post-create"));

    /* an error answered 200 makes no event */
    ev = rpc("{\"method\":\"member.create\",\"params\":[{}],\"id\":1}",
             "{\"result\":null,\"error\":{\"code\":1000,\"message\":\"x\"},"
             "\"id\":1}");
    ck_assert_int_eq(ev->nelts, 0);

    /* a delete answered true: the first param names it */
    ev = rpc("{\"method\":\"key.delete\",\"params\":[\"k9\"],\"id\":2}",
             "{\"result\":true,\"error\":null,\"id\":2}");
    ck_assert_int_eq(ev->nelts, 1);
    e = ev_at(ev, 0);
    ck_assert_str_eq(e->oid, "k9");
    ck_assert_int_eq(e->event, ET_EV_DELETE);
    ck_assert_str_eq(e->body, "{\"apikey\":\"k9\",\"object_type\":\"key\"}");
    /* ... or an object holding the id field, or a number */
    ev = rpc("{\"method\":\"key.delete\",\"params\":[{\"apikey\":\"k8\"}],"
             "\"id\":3}", "{\"result\":null,\"id\":3}");
    ck_assert_str_eq(ev_at(ev, 0)->oid, "k8");
    /* application has no field of its own: EventTriggerIdField's */
    ev = rpc("{\"method\":\"application.delete\",\"params\":[77],\"id\":3}",
             "{\"result\":{},\"id\":3}");
    ck_assert_str_eq(ev_at(ev, 0)->oid, "77");
    /* a create whose result has no id is recorded as failed */
    ev = rpc("{\"method\":\"application.create\",\"params\":[{}],\"id\":4}",
             "{\"result\":{\"name\":\"a\"},\"id\":4}");
    ck_assert_int_eq(ev_at(ev, 0)->state, ET_ST_FAILED);
    ck_assert_str_eq(ev_at(ev, 0)->error, "the result of application.create "
                                          "has no 'id' field");
    /* a create whose result is not an object */
    ev = rpc("{\"method\":\"application.create\",\"params\":[{}],\"id\":4}",
             "{\"result\":5,\"id\":4}");
    ck_assert_str_eq(ev_at(ev, 0)->error, "the result of application.create "
                                          "is a JSON number, not an object");
}
END_TEST

START_TEST(test_rpc_batch)
{
    apr_array_header_t *ev;

    cap.id_field = "username";
    /* answered out of order, one error, one call that is no event; the
     * events follow the request's order */
    ev = rpc("[{\"jsonrpc\":\"2.0\",\"method\":\"member.create\","
             "\"params\":[{\"username\":\"a\"}],\"id\":1},"
             "{\"jsonrpc\":\"2.0\",\"method\":\"member.fetch\","
             "\"params\":[\"a\"],\"id\":2},"
             "{\"jsonrpc\":\"2.0\",\"method\":\"member.update\","
             "\"params\":[{\"username\":\"a\"}],\"id\":3},"
             "{\"jsonrpc\":\"2.0\",\"method\":\"member.update\","
             "\"params\":[{\"username\":\"b\"}],\"id\":4},"
             "{\"jsonrpc\":\"2.0\",\"method\":\"member.delete\","
             "\"params\":[\"a\"],\"id\":5}]",
             "[{\"jsonrpc\":\"2.0\",\"result\":true,\"id\":5},"
             "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-1},\"id\":4},"
             "{\"jsonrpc\":\"2.0\",\"result\":{\"username\":\"a\",\"v\":2},"
             "\"id\":3},"
             "{\"jsonrpc\":\"2.0\",\"result\":{\"username\":\"a\"},"
             "\"id\":2},"
             "{\"jsonrpc\":\"2.0\",\"result\":{\"username\":\"a\",\"v\":1},"
             "\"id\":1}]");
    ck_assert_int_eq(ev->nelts, 3);
    ck_assert_int_eq(ev_at(ev, 0)->event, ET_EV_CREATE);
    ck_assert_str_eq(ev_at(ev, 0)->body, "{\"username\":\"a\",\"v\":1,"
                                         "\"object_type\":\"member\"}");
    ck_assert_int_eq(ev_at(ev, 1)->event, ET_EV_UPDATE);
    ck_assert_str_eq(ev_at(ev, 1)->body, "{\"username\":\"a\",\"v\":2,"
                                         "\"object_type\":\"member\"}");
    ck_assert_int_eq(ev_at(ev, 2)->event, ET_EV_DELETE);
    ck_assert_str_eq(ev_at(ev, 2)->oid, "a");
    /* the txns differ */
    ck_assert_str_ne(ev_at(ev, 0)->txn, ev_at(ev, 1)->txn);

    /* an answer that cannot be read: one failed event, for the first call */
    cap.content_type = "text/html";
    ev = rpc("[{\"method\":\"key.create\",\"params\":[{}],\"id\":1},"
             "{\"method\":\"member.create\",\"params\":[{}],\"id\":2}]",
             "<html></html>");
    ck_assert_int_eq(ev->nelts, 1);
    ck_assert_int_eq(ev_at(ev, 0)->state, ET_ST_FAILED);
    ck_assert_int_eq(ev_at(ev, 0)->object, ET_OBJ_KEY);
    ck_assert_str_eq(ev_at(ev, 0)->error, "answer is text/html, not JSON");
    cap.content_type = NULL;
    ev = rpc("{\"method\":\"key.create\",\"params\":[{}],\"id\":1}", "7");
    ck_assert_str_eq(ev_at(ev, 0)->error, "JSON-RPC answer is a JSON number");
    /* notifications expect no answer and make no event, even with an
     * empty body (what a 2.0 server sends them) */
    ev = rpc("{\"jsonrpc\":\"2.0\",\"method\":\"member.update\","
             "\"params\":{\"username\":\"n\"}}", "");
    ck_assert_int_eq(ev->nelts, 0);
    ev = rpc("[{\"jsonrpc\":\"2.0\",\"method\":\"member.update\","
             "\"params\":[{}]},{\"jsonrpc\":\"2.0\",\"method\":"
             "\"key.create\",\"params\":[{}],\"id\":4}]",
             "[{\"jsonrpc\":\"2.0\",\"result\":{\"username\":\"k4\"},"
             "\"id\":4}]");
    ck_assert_int_eq(ev->nelts, 1);
    ck_assert_str_eq(ev_at(ev, 0)->oid, "k4");
    /* the result's envelope, with EventTriggerObject inside the result */
    cap.object_ptr = "/member";
    ev = rpc("{\"method\":\"member.update\",\"params\":[{}],\"id\":1}",
             "{\"result\":{\"member\":{\"username\":\"z\"}},\"id\":1}");
    ck_assert_str_eq(ev_at(ev, 0)->oid, "z");
}
END_TEST

Suite *consoles_suite(void)
{
    Suite *s = suite_create("consoles");
    TCase *tc = tcase_create("consoles");

    tcase_add_checked_fixture(tc, setup, ut_teardown);
    tcase_add_test(tc, test_pointer_check);
    tcase_add_test(tc, test_pointer_get);
    tcase_add_test(tc, test_pointer_set);
    tcase_add_test(tc, test_answer_without_id);
    tcase_add_test(tc, test_envelopes);
    tcase_add_test(tc, test_not_json);
    tcase_add_test(tc, test_rpc_method);
    tcase_add_test(tc, test_rpc_request);
    tcase_add_test(tc, test_rpc_capture);
    tcase_add_test(tc, test_rpc_batch);
    suite_add_tcase(s, tc);
    return s;
}
