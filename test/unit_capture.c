/* Licensed under the Apache License, Version 2.0. */
/*
 * unit_capture.c: from a console's answer to an event (et_capture.c), and
 * the jansson wrapper it relies on (et_json.c).
 */
#include <string.h>

#include <apr_lib.h>
#include <apr_strings.h>

#include "et_capture.h"
#include "et_json.h"
#include "unit_tests.h"

#define ENDPOINT "http://cb.example.com/hooks/"
#define CB       "http://cb.example.com/hooks/v1/"

static et_site_t site;
static et_capture_t cap;

/* A JSON site and a capture of a 2xx answer to a member create. */
static void cap_setup(void)
{
    ut_setup();
    ut_capture_fixture(&site, &cap, ENDPOINT, ET_EV_CREATE, "/admin/members");
}

static void cap_body(const char *body)
{
    ut_capture_body(&cap, body);
}

static et_event_t *capture(void)
{
    et_event_t *ev = NULL;
    apr_time_t before = apr_time_now();
    const char *c;

    ck_assert_int_eq(et_capture_to_event(ut_pool, &cap, &ev), APR_SUCCESS);
    ck_assert_ptr_nonnull(ev);
    /* what every event carries, pending or failed */
    ck_assert_ptr_nonnull(ev->txn);
    ck_assert_uint_eq(strlen(ev->txn), 32);
    for (c = ev->txn; *c; c++) {
        ck_assert(apr_isdigit(*c) || (*c >= 'a' && *c <= 'f'));
    }
    ck_assert_str_eq(ev->site, site.name);
    ck_assert_int_eq(ev->object, cap.object);
    ck_assert_int_eq(ev->event, cap.event);
    ck_assert_ptr_nonnull(ev->oid);
    ck_assert_ptr_nonnull(ev->url);
    ck_assert_ptr_nonnull(ev->body);
    ck_assert_uint_eq(strlen(ev->body), ev->body_len);
    ck_assert_str_eq(ev->content_type, et_format_content_type(site.format));
    ck_assert(ev->created >= before && ev->created <= apr_time_now());
    ck_assert_int_eq(ev->attempts, 0);
    ck_assert(ev->rowid == 0);
    return ev;
}

static et_event_t *pending(void)
{
    et_event_t *ev = capture();

    ck_assert_msg(ev->state == ET_ST_PENDING, "failed: %s", ev->error);
    ck_assert_ptr_null(ev->error);
    return ev;
}

/* A failed event whose error contains @a why. */
static et_event_t *failed(const char *why)
{
    et_event_t *ev = capture();

    ck_assert_int_eq(ev->state, ET_ST_FAILED);
    ck_assert_ptr_nonnull(ev->error);
    ck_assert_msg(strstr(ev->error, why) != NULL, "error '%s' lacks '%s'",
                  ev->error, why);
    ck_assert_uint_eq(ev->body_len, 0);
    return ev;
}

static const char *url_for(const char *obj, const char *seg,
                           const char *event, const et_event_t *ev)
{
    return apr_pstrcat(ut_pool, CB, obj, "/", seg, "?event=", event,
                       "&txn=", ev->txn, NULL);
}

START_TEST(test_capture_json)
{
    et_event_t *ev;

    cap_body("{\"id\":\"abc\",\"username\":\"dev1\",\"email\":\"d@x\"}");
    ev = pending();
    ck_assert_str_eq(ev->oid, "abc");
    ck_assert_str_eq(ev->url, url_for("member", "abc", "post-create", ev));
    ck_assert_str_eq(ev->body, "{\"id\":\"abc\",\"username\":\"dev1\","
                     "\"email\":\"d@x\",\"object_type\":\"member\"}");
    ck_assert_str_eq(ev->content_type, "application/json");
}
END_TEST

START_TEST(test_capture_two_txns)
{
    et_event_t *a, *b;

    cap_body("{\"id\":\"abc\"}");
    a = pending();
    b = pending();
    ck_assert_str_ne(a->txn, b->txn);
}
END_TEST

START_TEST(test_capture_numeric_id)
{
    et_event_t *ev;

    cap.object = ET_OBJ_KEY;
    cap.event = ET_EV_UPDATE;
    cap_body("{\"id\":14398445,\"apikey\":\"bs8\",\"status\":\"active\"}");
    ev = pending();
    ck_assert_str_eq(ev->oid, "14398445");
    ck_assert_str_eq(ev->url, url_for("key", "14398445", "post-update", ev));
    ck_assert_str_eq(ev->body, "{\"id\":14398445,\"apikey\":\"bs8\","
                     "\"status\":\"active\",\"object_type\":\"key\"}");

    cap_body("{\"id\":-7}");
    ck_assert_str_eq(pending()->oid, "-7");
}
END_TEST

START_TEST(test_capture_id_field)
{
    et_event_t *ev;

    cap.object = ET_OBJ_KEY;
    cap.id_field = "apikey";
    cap_body("{\"id\":1,\"apikey\":\"bs8ssd5w\"}");
    ev = pending();
    ck_assert_str_eq(ev->oid, "bs8ssd5w");
    ck_assert_str_eq(ev->url, url_for("key", "bs8ssd5w", "post-create", ev));

    /* no id_field configured means "id" */
    cap.id_field = NULL;
    ck_assert_str_eq(pending()->oid, "1");
}
END_TEST

START_TEST(test_capture_object_type_kept)
{
    et_event_t *ev;

    cap.object = ET_OBJ_PACKAGE_KEY;
    cap_body("{\"object_type\":\"custom\",\"id\":\"p1\"}");
    ev = pending();
    ck_assert_str_eq(ev->body, "{\"object_type\":\"custom\",\"id\":\"p1\"}");
    ck_assert_str_eq(ev->url, url_for("package_key", "p1", "post-create", ev));

    /* present but null is still present */
    cap_body("{\"id\":\"p1\",\"object_type\":null}");
    ck_assert_str_eq(pending()->body, "{\"id\":\"p1\",\"object_type\":null}");
}
END_TEST

START_TEST(test_capture_unicode_kept)
{
    /* JSON: the console's bytes as they were (escapes, order, numbers),
     * whitespace around the object dropped, object_type appended */
    cap.object = ET_OBJ_APPLICATION;
    cap_body(" {\"z\":1,\"id\":\"a/b c\",\"name\":\"caf\\u00e9\","
             "\"a\":[1,{\"b\":null}],\"r\":9.99,\"t\":true}\n");
    ck_assert_str_eq(pending()->body,
                     "{\"z\":1,\"id\":\"a/b c\",\"name\":\"caf\\u00e9\","
                     "\"a\":[1,{\"b\":null}],\"r\":9.99,\"t\":true,"
                     "\"object_type\":\"application\"}");
    /* raw UTF-8 stays raw UTF-8 */
    cap_body("{\"id\":\"x\",\"name\":\"caf\xc3\xa9\"}");
    ck_assert_str_eq(pending()->body,
                     "{\"id\":\"x\",\"name\":\"caf\xc3\xa9\","
                     "\"object_type\":\"application\"}");
}
END_TEST

START_TEST(test_capture_escaped_id)
{
    et_event_t *ev;

    cap_body("{\"id\":\"a/b?c d\"}");
    ev = pending();
    ck_assert_str_eq(ev->oid, "a/b?c d");
    ck_assert_str_eq(ev->url, url_for("member", "a%2fb%3fc%20d",
                                      "post-create", ev));
    cap_body("{\"id\":\"..\"}");
    ev = pending();
    ck_assert_str_eq(ev->url, url_for("member", "%2E%2E", "post-create", ev));
}
END_TEST

START_TEST(test_capture_form)
{
    et_event_t *ev;

    site.format = ET_FMT_FORM;
    cap.object = ET_OBJ_KEY;
    cap_body("{\"id\":5,\"apikey\":\"k 1\",\"member\":{\"username\":\"dev1\","
             "\"phone\":null},\"limits\":[{\"period\":\"second\","
             "\"ceiling\":2}],\"active\":true}");
    ev = pending();
    ck_assert_str_eq(ev->content_type, "application/x-www-form-urlencoded");
    ck_assert_str_eq(ev->body, "id=5&apikey=k+1&member[username]=dev1"
                     "&member[phone]=&limits[0][period]=second"
                     "&limits[0][ceiling]=2&active=true&object_type=key");
}
END_TEST

START_TEST(test_capture_delete_with_body)
{
    et_event_t *ev;

    cap.event = ET_EV_DELETE;
    cap_body("{\"id\":\"m1\"}");
    ev = pending();
    ck_assert_str_eq(ev->url, url_for("member", "m1", "post-delete", ev));
    ck_assert_str_eq(et_event_method(ev->event), "DELETE");
    ck_assert_str_eq(ev->body, "{\"id\":\"m1\",\"object_type\":\"member\"}");
}
END_TEST

START_TEST(test_capture_no_body_path_id)
{
    et_event_t *ev;

    /* a 204 to a DELETE: the id is the path's last segment */
    cap.event = ET_EV_DELETE;
    cap.uri_path = "/admin/members/42";
    ev = pending();
    ck_assert_str_eq(ev->oid, "42");
    ck_assert_str_eq(ev->url, url_for("member", "42", "post-delete", ev));
    ck_assert_str_eq(ev->body, "{\"id\":\"42\",\"object_type\":\"member\"}");

    cap.uri_path = "/admin/members/42//";
    ck_assert_str_eq(pending()->oid, "42");
    cap.uri_path = "app 7";
    ck_assert_str_eq(pending()->oid, "app 7");

    /* the id field is the configured one, in the form too */
    site.format = ET_FMT_FORM;
    cap.id_field = "apikey";
    cap.object = ET_OBJ_KEY;
    cap.uri_path = "/keys/caf\xc3\xa9";
    ev = pending();
    ck_assert_str_eq(ev->oid, "caf\xc3\xa9");
    ck_assert_str_eq(ev->url, url_for("key", "caf%c3%a9", "post-delete", ev));
    ck_assert_str_eq(ev->body, "apikey=caf%c3%a9&object_type=key");

    /* body pointer set but nothing captured is the same */
    cap.body = "";
    ck_assert_str_eq(pending()->oid, "caf\xc3\xa9");
}
END_TEST

START_TEST(test_capture_no_body_no_id)
{
    static const char *const paths[] = { "/", "", "///" };
    apr_size_t i;
    et_event_t *ev;

    cap.event = ET_EV_DELETE;
    for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        cap.uri_path = paths[i];
        ev = failed("no response body and no id in the request path");
        ck_assert_str_eq(ev->oid, "");
    }
    cap.uri_path = NULL;
    failed("no response body and no id in the request path");
}
END_TEST

START_TEST(test_capture_create_without_body)
{
    et_event_t *ev;

    /* a POST to the collection: its path is no id */
    cap.uri_path = "/console/members";
    failed("without a body or a Location header");
    cap.location = "https://console.example.com/console/members/m%2042?x=1";
    ev = pending();
    ck_assert_str_eq(ev->oid, "m 42");
    ck_assert_str_eq(ev->body, "{\"id\":\"m 42\",\"object_type\":\"member\"}");
    cap.location = "/console/members/77";
    ck_assert_str_eq(pending()->oid, "77");
}
END_TEST

START_TEST(test_capture_no_body_bad_path_id)
{
    cap.event = ET_EV_UPDATE;
    cap.uri_path = "/m/a\x01" "b";
    ck_assert_str_eq(failed("control characters")->oid, "");
    cap.uri_path = "/m/\xff\xfe";
    failed("not valid UTF-8");
    cap.max_id_len = 3;
    cap.uri_path = "/m/1234";
    failed("id longer than 3 bytes");
}
END_TEST

START_TEST(test_capture_incomplete)
{
    et_event_t *ev;

    cap_body("{\"id\":\"abc\"}");
    cap.incomplete = 1;
    ev = failed("response incomplete");
    ck_assert_str_eq(ev->error, "response incomplete");
    ck_assert_str_eq(ev->oid, "");
    ck_assert_str_eq(ev->body, "");
    /* where the call would have gone, though it never will */
    ck_assert_str_eq(ev->url, url_for("member", "", "post-create", ev));
}
END_TEST

START_TEST(test_capture_content_encoding)
{
    cap_body("\x1f\x8b\x08");
    cap.content_encoding = "gzip";
    ck_assert_str_eq(failed("gzip")->error, "response is content-encoded "
                     "(gzip), cannot read the object");

    /* escaped for the log, and shortened */
    cap.content_encoding = "br\x01\n";
    ck_assert_ptr_null(strchr(failed("content-encoded")->error, '\n'));
    cap.content_encoding = apr_pstrcat(ut_pool, "x", apr_psprintf(ut_pool,
                                       "%0500d", 0), NULL);
    ck_assert_uint_lt(strlen(failed("content-encoded")->error), 200);

    /* identity is no encoding */
    cap_body("{\"id\":\"abc\"}");
    cap.content_encoding = "identity";
    pending();
    cap.content_encoding = "Identity";
    pending();
    cap.content_encoding = "";
    pending();
}
END_TEST

START_TEST(test_capture_over_limit)
{
    cap_body("{\"id\":\"abc\"}");
    cap.limit = 11;
    cap.body_total = 70000;
    ck_assert_str_eq(failed("exceeds")->error, "response body of 70000 bytes "
                     "exceeds EventTriggerCaptureLimit 11");
    /* exactly at the limit is fine, and so is "no limit" */
    cap.limit = cap.body_len;
    cap.body_total = (apr_off_t)cap.body_len;
    pending();
    cap.limit = APR_SIZE_MAX;
    pending();
    /* the bytes seen count, not only those kept */
    cap.limit = 100;
    cap.body_total = 101;
    failed("response body of 101 bytes");
}
END_TEST

START_TEST(test_capture_not_object)
{
    cap_body("[{\"id\":1}]");
    ck_assert_str_eq(failed("array")->error,
                     "body is a JSON array, not an object");
    cap_body("\"id\"");
    failed("body is a JSON string, not an object");
    cap_body("42");
    failed("body is a JSON number, not an object");
    cap_body("true");
    failed("body is a JSON boolean, not an object");
    cap_body("null");
    failed("body is a JSON null, not an object");
}
END_TEST

START_TEST(test_capture_malformed)
{
    static const char *const bodies[] = {
        "{\"id\": hunter2}",
        "{\"id\":\"1\",\"password\":\"hunter2\"",
        "{\"id\":\"1\"} hunter2",
        "<html>hunter2</html>",
        "{\"id\":\"hunter2\",}",
        "   ",
    };
    apr_size_t i;
    et_event_t *ev;

    for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        cap_body(bodies[i]);
        ev = failed("malformed JSON");
        /* the console's bytes never reach a log line */
        ck_assert_msg(strstr(ev->error, "hunter") == NULL, "%s", ev->error);
        ck_assert_msg(strstr(ev->error, "line 1, column ") != NULL, "%s",
                      ev->error);
    }
    cap_body("{\"id\":1} x");
    failed("data after the JSON value");
    cap_body("{\"id\":");
    failed("premature end of input");
    cap_body("{\"id\":99999999999999999999}");
    failed("number out of range");
    /* the body goes out verbatim: a receiver keeping the first "id" would
     * read another id than the URL's */
    cap_body("{\"id\":\"a\",\"id\":\"b\"}");
    failed("duplicate key");
    cap_body("{\"id\":\"a\",\"m\":{\"x\":1,\"x\":2}}");
    failed("duplicate key");
}
END_TEST

START_TEST(test_capture_nul_and_utf8)
{
    et_event_t *ev;

    cap_body("{\"id\":\"a\\u0000b\"}");
    failed("NUL character");
    cap.body = "{\"id\":\"a\0b\"}";
    cap.body_len = 12;
    cap.body_total = 12;
    failed("malformed JSON");
    /* after a number or a literal, jansson 2.14 skips a NUL byte */
    cap.body = "{\"id\":12\0,\"a\":true\0}";
    cap.body_len = 20;
    cap.body_total = 20;
    failed("NUL character at byte 8");
    cap_body("{\"id\":\"caf\xe9\"}");
    ev = failed("invalid UTF-8");
    ck_assert_ptr_null(strchr(ev->error, '\xe9'));
}
END_TEST

START_TEST(test_capture_too_deep)
{
    cap.max_depth = 3;
    cap_body("{\"id\":1,\"a\":{\"b\":[{\"c\":1}]}}");
    ck_assert_str_eq(failed("nesting")->error, "nesting deeper than 3");
    cap_body("{\"id\":1,\"a\":{\"b\":[1,{}]}}");
    failed("nesting deeper than 3");
    /* three levels are allowed */
    cap_body("{\"id\":1,\"a\":{\"b\":[1,2]},\"c\":[[]]}");
    pending();

    /* beyond jansson's own limit as well */
    cap.max_depth = 16;
    cap.limit = 100000;
    cap_body(apr_pstrcat(ut_pool, "{\"id\":1,\"a\":",
                         apr_psprintf(ut_pool, "%05000d", 0), NULL));
    memset((char *)cap.body + 12, '[', 5000);
    failed("nesting deeper than 16");
}
END_TEST

START_TEST(test_capture_no_id)
{
    cap_body("{\"uid\":\"abc\"}");
    ck_assert_str_eq(failed("no 'id'")->error,
                     "saved object has no 'id' field and no Location "
                     "names it");
    cap_body("{\"id\":null}");
    failed("saved object has no 'id' field");
    cap.id_field = "apikey";
    cap_body("{\"id\":\"x\"}");
    failed("saved object has no 'apikey' field");
}
END_TEST

START_TEST(test_capture_bad_id)
{
    cap_body("{\"id\":true}");
    ck_assert_str_eq(failed("'id'")->error,
                     "'id' is a JSON boolean, not a string or an integer");
    cap_body("{\"id\":1.5}");
    failed("'id' is a JSON real number");
    cap_body("{\"id\":{\"v\":1}}");
    failed("'id' is a JSON object");
    cap_body("{\"id\":[1]}");
    failed("'id' is a JSON array");
    cap_body("{\"id\":\"\"}");
    failed("'id' is an empty string");
}
END_TEST

START_TEST(test_capture_id_limits)
{
    cap.max_id_len = 8;
    cap_body("{\"id\":\"12345678\"}");
    ck_assert_str_eq(pending()->oid, "12345678");
    cap_body("{\"id\":\"123456789\"}");
    ck_assert_str_eq(failed("id longer than 8 bytes")->oid, "");
    cap_body("{\"id\":123456789}");
    failed("id longer than 8 bytes");

    cap_body("{\"id\":\"a\\nb\"}");
    failed("id contains control characters");
    cap_body("{\"id\":\"a\\u007fb\"}");
    failed("id contains control characters");
    cap_body("{\"id\":\"\\t\"}");
    failed("id contains control characters");
}
END_TEST

START_TEST(test_capture_misconfigured)
{
    cap_body("{\"id\":\"abc\"}");
    cap.object = ET_OBJ_NONE;
    failed("no object type");
    cap.object = ET_OBJ_MEMBER;
    site.endpoint = NULL;
    ck_assert_str_eq(failed("EventTriggerEndpoint")->url, "");
}
END_TEST

/* et_json.c directly */

START_TEST(test_json_parse)
{
    json_t *j;
    const char *err;

    ck_assert_int_eq(et_json_parse_object(ut_pool, "{\"a\":[1,{\"b\":2}]}",
                                          17, 3, &j, &err), APR_SUCCESS);
    ck_assert_ptr_nonnull(j);
    ck_assert_ptr_null(err);
    ck_assert_int_eq(et_json_parse_object(ut_pool, "{\"a\":[1,{\"b\":2}]}",
                                          17, 2, &j, &err), APR_EINVAL);
    ck_assert_ptr_null(j);
    ck_assert_str_eq(err, "nesting deeper than 2");
    /* no limit given: jansson's own */
    ck_assert_int_eq(et_json_parse_object(ut_pool, "{\"a\":[[[[[]]]]]}",
                                          16, 0, &j, &err), APR_SUCCESS);
    /* only len bytes are read */
    ck_assert_int_eq(et_json_parse_object(ut_pool, "{}garbage", 2, 8, &j,
                                          &err), APR_SUCCESS);
    ck_assert_int_eq(et_json_parse_object(ut_pool, NULL, 0, 8, &j, &err),
                     APR_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "premature end of input"));
}
END_TEST

START_TEST(test_json_pool_release)
{
    apr_pool_t *sub;
    json_t *j;
    const char *err;

    /* the pool holds the only reference: valgrind/ASan see a leak or a
     * double free if the cleanup is wrong */
    apr_pool_create(&sub, ut_pool);
    ck_assert_int_eq(et_json_parse_object(sub, "{\"a\":\"b\"}", 9, 8, &j,
                                          &err), APR_SUCCESS);
    json_incref(j);
    apr_pool_destroy(sub);
    ck_assert_int_eq(j->refcount, 1);
    json_decref(j);
    ck_assert_ptr_null(et_json_pool_own(ut_pool, NULL));
}
END_TEST

START_TEST(test_json_dump)
{
    json_t *j = ut_json("{ \"b\" : 1 , \"a\" : [ true , null ],"
                        " \"s\" : \"\\u00e9/\\\"\" }");
    apr_size_t len;
    const char *s = et_json_dump(ut_pool, j, &len);

    ck_assert_str_eq(s, "{\"b\":1,\"a\":[true,null],\"s\":\"\xc3\xa9/\\\"\"}");
    ck_assert_uint_eq(len, strlen(s));
}
END_TEST

START_TEST(test_json_scalar_id)
{
    json_t *j = ut_json("{\"s\":\"x y\",\"i\":-12,\"big\":9223372036854775807,"
                        "\"r\":1.0,\"n\":null,\"e\":\"\",\"f\":false}");
    const char *id, *err;

    ck_assert_int_eq(et_json_scalar_id(ut_pool, j, "s", &id, &err),
                     APR_SUCCESS);
    ck_assert_str_eq(id, "x y");
    ck_assert_int_eq(et_json_scalar_id(ut_pool, j, "i", &id, &err),
                     APR_SUCCESS);
    ck_assert_str_eq(id, "-12");
    ck_assert_int_eq(et_json_scalar_id(ut_pool, j, "big", &id, &err),
                     APR_SUCCESS);
    ck_assert_str_eq(id, "9223372036854775807");
    ck_assert_int_eq(et_json_scalar_id(ut_pool, j, "n", &id, &err),
                     APR_NOTFOUND);
    ck_assert_int_eq(et_json_scalar_id(ut_pool, j, "absent", &id, &err),
                     APR_NOTFOUND);
    ck_assert_ptr_null(id);
    ck_assert_int_eq(et_json_scalar_id(ut_pool, j, "r", &id, &err),
                     APR_EINVAL);
    ck_assert_ptr_nonnull(err);
    ck_assert_int_eq(et_json_scalar_id(ut_pool, j, "e", &id, &err),
                     APR_EINVAL);
    ck_assert_int_eq(et_json_scalar_id(ut_pool, j, "f", &id, &err),
                     APR_EINVAL);
    ck_assert_str_eq(err, "'f' is a JSON boolean, not a string or an integer");
}
END_TEST

Suite *capture_suite(void)
{
    Suite *s = suite_create("capture");
    TCase *tc;

    tc = tcase_create("capture");
    tcase_add_checked_fixture(tc, cap_setup, ut_teardown);
    tcase_add_test(tc, test_capture_json);
    tcase_add_test(tc, test_capture_two_txns);
    tcase_add_test(tc, test_capture_numeric_id);
    tcase_add_test(tc, test_capture_id_field);
    tcase_add_test(tc, test_capture_object_type_kept);
    tcase_add_test(tc, test_capture_unicode_kept);
    tcase_add_test(tc, test_capture_escaped_id);
    tcase_add_test(tc, test_capture_form);
    tcase_add_test(tc, test_capture_delete_with_body);
    tcase_add_test(tc, test_capture_no_body_path_id);
    tcase_add_test(tc, test_capture_no_body_no_id);
    tcase_add_test(tc, test_capture_no_body_bad_path_id);
    tcase_add_test(tc, test_capture_create_without_body);
    tcase_add_test(tc, test_capture_incomplete);
    tcase_add_test(tc, test_capture_content_encoding);
    tcase_add_test(tc, test_capture_over_limit);
    tcase_add_test(tc, test_capture_not_object);
    tcase_add_test(tc, test_capture_malformed);
    tcase_add_test(tc, test_capture_nul_and_utf8);
    tcase_add_test(tc, test_capture_too_deep);
    tcase_add_test(tc, test_capture_no_id);
    tcase_add_test(tc, test_capture_bad_id);
    tcase_add_test(tc, test_capture_id_limits);
    tcase_add_test(tc, test_capture_misconfigured);
    suite_add_tcase(s, tc);

    tc = tcase_create("json");
    tcase_add_checked_fixture(tc, ut_setup, ut_teardown);
    tcase_add_test(tc, test_json_parse);
    tcase_add_test(tc, test_json_pool_release);
    tcase_add_test(tc, test_json_dump);
    tcase_add_test(tc, test_json_scalar_id);
    suite_add_tcase(s, tc);
    return s;
}
