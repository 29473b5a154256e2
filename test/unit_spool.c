/* Licensed under the Apache License, Version 2.0. */
/*
 * unit_spool.c: the local spool (et_spool.c, et_writer_spool): events a
 * PostgreSQL outbox could not take wait in an SQLite outbox and are moved
 * into the outbox oldest first. The outbox here is a second SQLite file,
 * or the PostgreSQL server ET_TEST_PGSQL names.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <apr_strings.h>
#include <apr_file_io.h>
#include <apr_time.h>

#include "et_outbox.h"
#include "et_committer.h"
#include "et_guard.h"
#include "et_spool.h"
#include "et_url.h"
#include "unit_tests.h"

static char dir[64];
static const char *spool_spec, *store_spec;
static et_outbox_t *spool, *store;
static et_guard_t *g;

static void setup_with(int pg)
{
    const char *err = NULL;

    ut_setup();
    strcpy(dir, "/tmp/et_spool_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    spool_spec = apr_pstrcat(ut_pool, "sqlite3:", dir, "/spool.db", NULL);
    store_spec = pg ? ut_pgsql_fresh()
                    : apr_pstrcat(ut_pool, "sqlite3:", dir, "/outbox.db",
                                  NULL);
    ck_assert_msg(et_outbox_open(&spool, ut_pool, spool_spec, 1, &err)
                  == APR_SUCCESS, "spool: %s", err ? err : "?");
    ck_assert_msg(et_outbox_open(&store, ut_pool, store_spec, 1, &err)
                  == APR_SUCCESS, "outbox: %s", err ? err : "?");
    g = et_guard_init(apr_pcalloc(ut_pool, et_guard_size(1)), 1,
                      apr_time_now());
}

static void setup(void)
{
    setup_with(0);
}

static void setup_pg(void)
{
    setup_with(1);
}

static void teardown(void)
{
    static const char *const files[] = {
        "spool.db", "spool.db-wal", "spool.db-shm", "outbox.db",
        "outbox.db-wal", "outbox.db-shm", NULL
    };
    int i;

    et_outbox_close(spool);
    et_outbox_close(store);
    for (i = 0; files[i]; i++) {
        apr_file_remove(apr_pstrcat(ut_pool, dir, "/", files[i], NULL),
                        ut_pool);
    }
    ck_assert_int_eq(apr_dir_remove(dir, ut_pool), APR_SUCCESS);
    ut_teardown();
}

static et_event_t *ev_of(const char *oid, et_event_e e)
{
    et_event_t *ev = apr_pcalloc(ut_pool, sizeof(*ev));

    ck_assert_int_eq(et_txn_new(ut_pool, &ev->txn), APR_SUCCESS);
    ev->site = "s1";
    ev->object = ET_OBJ_MEMBER;
    ev->event = e;
    ev->oid = oid;
    ev->url = et_url_build(ut_pool, "http://r.example/h", ev->object, oid, e,
                           ev->txn);
    ev->content_type = "application/json";
    ev->body = apr_psprintf(ut_pool, "{\"id\":\"%s\"}", oid);
    ev->body_len = strlen(ev->body);
    ev->state = ET_ST_PENDING;
    return ev;
}

/* @a n events over 3 objects, interleaved, stored in @a ob in order. */
static et_event_t **fill(et_outbox_t *ob, int n)
{
    et_event_t **evs = apr_palloc(ut_pool, n * sizeof(*evs));
    int i;

    for (i = 0; i < n; i++) {
        evs[i] = ev_of(apr_psprintf(ut_pool, "m%d", i % 3),
                       i < 3 ? ET_EV_CREATE : ET_EV_UPDATE);
        ck_assert_int_eq(et_outbox_insert(ob, evs[i]), APR_SUCCESS);
    }
    return evs;
}

static apr_int64_t total(et_outbox_t *ob)
{
    apr_int64_t n = -1;

    ck_assert_int_eq(et_outbox_total(ob, &n), APR_SUCCESS);
    return n;
}

/* The outbox holds exactly @a evs, in this order (its ids). */
static void holds_in_order(et_outbox_t *ob, et_event_t **evs, int n)
{
    apr_array_header_t *a;
    int i;

    ck_assert_int_eq(et_outbox_oldest(ob, ut_pool, n + 10, &a),
                     APR_SUCCESS);
    ck_assert_int_eq(a->nelts, n);
    for (i = 0; i < n; i++) {
        const et_event_t *got = APR_ARRAY_IDX(a, i, et_event_t *);

        ck_assert_str_eq(got->txn, evs[i]->txn);
        ck_assert_str_eq(got->oid, evs[i]->oid);
        ck_assert_str_eq(got->body, evs[i]->body);
        ck_assert_int_eq(got->state, ET_ST_PENDING);
    }
}

START_TEST(forwarding_moves_events_oldest_first_in_batches)
{
    et_event_t **evs = fill(spool, 10);
    et_spool_pass_t pass;
    apr_array_header_t *claimed;
    int passes = 0;

    do {
        ck_assert_int_eq(et_spool_forward(spool, store, ut_pool, 4, &pass),
                         APR_SUCCESS);
        ck_assert_int_eq(pass.moved, pass.read);
        ck_assert_int_eq(pass.dropped, 0);
        passes++;
    } while (pass.read);
    ck_assert_int_eq(passes, 4);      /* 4 + 4 + 2, then nothing */
    ck_assert_int_eq(total(spool), 0);
    holds_in_order(store, evs, 10);
    /* each object's first event is its head in the outbox: claimed, the
     * later ones not */
    ck_assert_int_eq(et_outbox_claim(store, ut_pool, "s1", "d1",
                                     apr_time_from_sec(30), 100, &claimed),
                     APR_SUCCESS);
    ck_assert_int_eq(claimed->nelts, 3);
    ck_assert_str_eq(APR_ARRAY_IDX(claimed, 0, et_event_t *)->txn,
                     evs[0]->txn);
    ck_assert_str_eq(APR_ARRAY_IDX(claimed, 2, et_event_t *)->txn,
                     evs[2]->txn);
}
END_TEST

START_TEST(a_pass_repeated_after_a_crash_stores_each_event_once)
{
    et_event_t **evs = fill(spool, 5);
    et_spool_pass_t pass;
    apr_status_t each[2];

    /* the outbox committed the first two, the spool's delete never ran */
    ck_assert_int_eq(et_outbox_insert_batch(store, evs, 2, each),
                     APR_SUCCESS);
    ck_assert_int_eq(et_spool_forward(spool, store, ut_pool, 100, &pass),
                     APR_SUCCESS);
    ck_assert_int_eq(pass.moved, 5);
    ck_assert_int_eq(total(spool), 0);
    holds_in_order(store, evs, 5);
}
END_TEST

/* A writer whose outbox does not answer (nothing listens there). */
static et_writer_t *writer_down(void)
{
    et_writer_t *w = et_writer_create(ut_pool, "pgsql:host=127.0.0.1 "
                                      "port=1 connect_timeout=2", NULL);

    et_writer_spool(w, spool_spec, g, NULL, NULL);
    return w;
}

static apr_status_t store_with(et_writer_t *w, et_event_t **evs, int n,
                               apr_status_t *each)
{
    char err[256];
    apr_status_t rv = et_writer_enter(w, err, sizeof(err));

    ck_assert_msg(rv == APR_SUCCESS, "enter: %s", err);
    return et_writer_store(w, evs, n, each, err, sizeof(err));
}

START_TEST(a_writer_spools_what_the_outbox_cannot_take_and_joins_the_spool)
{
    et_event_t *a[3], *b[2], *all[5];
    apr_status_t each[3];
    et_writer_t *up;
    et_spool_pass_t pass;
    int i;

    for (i = 0; i < 3; i++) {
        all[i] = a[i] = ev_of(apr_psprintf(ut_pool, "m%d", i % 2),
                              ET_EV_UPDATE);
    }
    a[0]->lease_owner = "d1";         /* as the intake's would be */
    ck_assert_int_eq(store_with(writer_down(), a, 3, each), APR_SUCCESS);
    for (i = 0; i < 3; i++) {
        ck_assert_int_eq(each[i], APR_SUCCESS);
    }
    ck_assert_ptr_null(a[0]->lease_owner);
    ck_assert_int_eq(et_guard_spool_count(g), 3);
    ck_assert_int_eq(total(spool), 3);

    /* the outbox answers again, but events wait in the spool: later ones
     * go behind them, not into the outbox */
    up = et_writer_create(ut_pool, store_spec, NULL);
    et_writer_spool(up, spool_spec, g, NULL, NULL);
    for (i = 0; i < 2; i++) {
        all[3 + i] = b[i] = ev_of("m0", ET_EV_DELETE);
    }
    ck_assert_int_eq(store_with(up, b, 2, each), APR_SUCCESS);
    ck_assert_int_eq(each[0], APR_SUCCESS);
    ck_assert_int_eq(et_guard_spool_count(g), 5);
    ck_assert_int_eq(total(store), 0);

    /* forwarded: the count goes to 0, and the next event is the
     * outbox's own, after the forwarded ones */
    ck_assert_int_eq(et_spool_forward(spool, store, ut_pool, 100, &pass),
                     APR_SUCCESS);
    ck_assert_int_eq(et_guard_spool_forwarded(g, (apr_uint32_t)pass.moved),
                     0);
    holds_in_order(store, all, 5);
    b[0] = ev_of("m0", ET_EV_CREATE);
    ck_assert_int_eq(store_with(up, b, 1, each), APR_SUCCESS);
    ck_assert_int_eq(each[0], APR_SUCCESS);
    ck_assert_int_eq(total(spool), 0);
    ck_assert_int_eq(total(store), 6);
    et_writer_close(up);
}
END_TEST

START_TEST(without_a_spool_the_event_is_not_stored)
{
    et_writer_t *w = et_writer_create(ut_pool, "pgsql:host=127.0.0.1 port=1 "
                                      "connect_timeout=2", NULL);
    et_event_t *e = ev_of("m0", ET_EV_CREATE);
    char err[256];
    apr_status_t each[1];

    ck_assert_int_ne(et_writer_enter(w, err, sizeof(err)), APR_SUCCESS);
    /* a spool that cannot be opened either: lost, and not counted */
    w = writer_down();
    et_writer_spool(w, apr_pstrcat(ut_pool, "sqlite3:", dir,
                                   "/no/such/dir/s.db", NULL), g, NULL, NULL);
    ck_assert_int_eq(store_with(w, &e, 1, each), APR_SUCCESS);
    ck_assert_int_ne(each[0], APR_SUCCESS);
    ck_assert_int_eq(et_guard_spool_count(g), 0);
}
END_TEST

static void wake(void *baton)
{
    (*(int *)baton)++;
}

START_TEST(the_forwarder_empties_the_spool_and_clears_the_count)
{
    et_event_t **evs = fill(spool, 7);
    et_spool_conf_t conf;
    et_spool_t *sp;
    apr_time_t deadline = apr_time_now() + apr_time_from_sec(10);
    int woken = 0;

    /* as at startup: the count from what the spool holds */
    ck_assert(et_guard_spool_set(g, 0, 7));
    memset(&conf, 0, sizeof(conf));
    conf.spool = spool_spec;
    conf.store = store_spec;
    conf.guard = g;
    conf.max = 3;
    conf.wake = wake;
    conf.wake_baton = &woken;
    ck_assert_int_eq(et_spool_start(&sp, ut_pool, &conf), APR_SUCCESS);
    while (et_guard_spool_count(g) && apr_time_now() < deadline) {
        apr_sleep(apr_time_from_msec(10));
    }
    et_spool_stop(sp);
    ck_assert_int_eq(et_guard_spool_count(g), 0);
    ck_assert_int_ge(woken, 3);
    ck_assert_int_eq(total(spool), 0);
    holds_in_order(store, evs, 7);
}
END_TEST

START_TEST(the_forwarder_counts_events_nobody_counted)
{
    et_event_t **evs = fill(spool, 2);
    et_spool_conf_t conf;
    et_spool_t *sp;
    et_guard_view_t v;
    apr_time_t deadline = apr_time_now() + apr_time_from_sec(10);

    /* a previous generation's children spooled them: the count is 0 */
    memset(&conf, 0, sizeof(conf));
    conf.spool = spool_spec;
    conf.store = store_spec;
    conf.guard = g;
    ck_assert_int_eq(et_spool_start(&sp, ut_pool, &conf), APR_SUCCESS);
    do {
        apr_sleep(apr_time_from_msec(10));
        et_guard_view(g, &v);
    } while (v.forwarded < 2 && apr_time_now() < deadline);
    et_spool_stop(sp);
    ck_assert_int_eq(v.forwarded, 2);
    ck_assert_int_eq(et_guard_spool_count(g), 0);
    holds_in_order(store, evs, 2);
}
END_TEST

Suite *spool_suite(void)
{
    Suite *s = suite_create("spool");
    TCase *tc = tcase_create("sqlite");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, forwarding_moves_events_oldest_first_in_batches);
    tcase_add_test(tc, a_pass_repeated_after_a_crash_stores_each_event_once);
    tcase_add_test(tc,
                   a_writer_spools_what_the_outbox_cannot_take_and_joins_the_spool);
    tcase_add_test(tc, without_a_spool_the_event_is_not_stored);
    tcase_add_test(tc, the_forwarder_empties_the_spool_and_clears_the_count);
    tcase_add_test(tc, the_forwarder_counts_events_nobody_counted);
    suite_add_tcase(s, tc);
    if (ut_have_pgsql()) {
        TCase *pg = tcase_create("pgsql");

        tcase_add_checked_fixture(pg, setup_pg, teardown);
        tcase_set_timeout(pg, 30);
        tcase_add_test(pg, forwarding_moves_events_oldest_first_in_batches);
        tcase_add_test(pg,
                       a_pass_repeated_after_a_crash_stores_each_event_once);
        tcase_add_test(pg,
                       a_writer_spools_what_the_outbox_cannot_take_and_joins_the_spool);
        tcase_add_test(pg,
                       the_forwarder_empties_the_spool_and_clears_the_count);
        suite_add_tcase(s, pg);
    }
    return s;
}
