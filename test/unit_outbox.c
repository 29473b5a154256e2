/* Licensed under the Apache License, Version 2.0. */
/*
 * unit_outbox.c: the outbox over apr_dbd with a real SQLite file
 * (et_outbox_dbd.c), the same tests against a real PostgreSQL server when
 * ET_TEST_PGSQL holds a conninfo (.ci/run starts one).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <apr_strings.h>
#include <apr_file_io.h>
#include <apr_time.h>
#include <apr_dbd.h>

#include <apr_thread_proc.h>
#include <apr_atomic.h>

#include <sqlite3.h>

#include "et_outbox.h"
#include "et_committer.h"
#include "et_dispatch.h"
#include "et_http.h"
#include "et_url.h"
#include "et_guard.h"
#include "unit_tests.h"

static et_outbox_t *ob;

static int by_rowid(const void *x, const void *y)
{
    const et_event_t *a = *(et_event_t *const *)x;
    const et_event_t *b = *(et_event_t *const *)y;

    return a->rowid < b->rowid ? -1 : a->rowid > b->rowid;
}
static char dbdir[64];

static void ob_setup(void)
{
    const char *err = NULL;
    const char *spec;

    ut_setup();
    strcpy(dbdir, "/tmp/et_unit_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dbdir));
    spec = apr_pstrcat(ut_pool, "sqlite3:", dbdir, "/outbox.db", NULL);
    ck_assert_msg(et_outbox_open(&ob, ut_pool, spec, 1, &err) == APR_SUCCESS,
                  "open: %s", err ? err : "?");
}

/* PostgreSQL: a clean schema in the given database for every test. */
static void ob_setup_pg(void)
{
    const char *err = NULL;

    ut_setup();
    dbdir[0] = '\0';
    ck_assert_msg(et_outbox_open(&ob, ut_pool, ut_pgsql_fresh(), 1, &err)
                  == APR_SUCCESS, "open: %s", err ? err : "?");
}

static void ob_teardown(void)
{
    et_outbox_close(ob);
    ob = NULL;
    if (dbdir[0]) {
        static const char *const files[] = { "outbox.db", "outbox.db-wal",
                                             "outbox.db-shm", NULL };
        int i;
        for (i = 0; files[i]; i++) {
            apr_file_remove(apr_pstrcat(ut_pool, dbdir, "/", files[i], NULL),
                            ut_pool);
        }
        ck_assert_int_eq(apr_dir_remove(dbdir, ut_pool), APR_SUCCESS);
    }
    ut_teardown();
}

static et_event_t *build(const char *site, et_object_e o, const char *oid,
                         et_event_e e, et_state_e st)
{
    et_event_t *ev = apr_pcalloc(ut_pool, sizeof(*ev));

    ck_assert_int_eq(et_txn_new(ut_pool, &ev->txn), APR_SUCCESS);
    ev->site = site;
    ev->object = o;
    ev->event = e;
    ev->oid = oid;
    ev->url = et_url_build(ut_pool, "http://r.example/h", o, oid, e, ev->txn);
    ev->content_type = "application/json";
    ev->body = apr_psprintf(ut_pool, "{\"id\":\"%s\"}", oid);
    ev->body_len = strlen(ev->body);
    ev->state = st;
    if (st == ET_ST_FAILED) {
        ev->error = "not a JSON object";
    }
    return ev;
}

static et_event_t *mk(const char *site, et_object_e o, const char *oid,
                      et_event_e e, et_state_e st)
{
    et_event_t *ev = build(site, o, oid, e, st);

    ck_assert_int_eq(et_outbox_insert(ob, ev), APR_SUCCESS);
    return ev;
}

/* Stored as the intake stores a fresh event for a dispatcher: leased to
 * @a owner if nothing of its object is pending. */
static et_event_t *mk_leased(const char *site, const char *oid,
                             et_state_e st, const char *owner)
{
    et_event_t *ev = build(site, ET_OBJ_MEMBER, oid, ET_EV_UPDATE, st);

    ev->lease_owner = owner;
    ev->lease_until = apr_time_now() + apr_time_from_sec(30);
    ck_assert_int_eq(et_outbox_insert(ob, ev), APR_SUCCESS);
    return ev;
}

/* Claim for every site the tests use, oldest first, as the dispatcher's
 * per-site claims together would. */
static apr_array_header_t *claim(const char *owner, int max)
{
    static const char *const sites[] = { "a", "b", "s1", "s2", NULL };
    apr_array_header_t *all = apr_array_make(ut_pool, 8, sizeof(et_event_t *));
    int i, j;

    for (i = 0; sites[i] && all->nelts < max; i++) {
        apr_array_header_t *a = NULL;

        ck_assert_int_eq(et_outbox_claim(ob, ut_pool, sites[i], owner,
                                         apr_time_from_sec(30),
                                         max - all->nelts, &a),
                         APR_SUCCESS);
        for (j = 0; j < a->nelts; j++) {
            APR_ARRAY_PUSH(all, et_event_t *) = APR_ARRAY_IDX(a, j,
                                                              et_event_t *);
        }
    }
    qsort(all->elts, all->nelts, sizeof(et_event_t *), by_rowid);
    return all;
}

/* The counts of site "s1", the only site these tests count for. */
static void counts_s1(et_outbox_counts_t *c)
{
    apr_array_header_t *sites;
    int i;

    memset(c, 0, sizeof(*c));
    ck_assert_int_eq(et_outbox_site_counts(ob, ut_pool, &sites), APR_SUCCESS);
    for (i = 0; i < sites->nelts; i++) {
        et_site_counts_t *sc = APR_ARRAY_IDX(sites, i, et_site_counts_t *);
        if (!strcmp(sc->site, "s1")) {
            *c = sc->counts;
        }
    }
}

#define EV(a, i) APR_ARRAY_IDX((a), (i), et_event_t *)

static void finish(const et_event_t *ev, const char *owner, et_state_e st,
                   apr_time_t due)
{
    et_outcome_t out;

    memset(&out, 0, sizeof(out));
    out.state = st;
    out.status = st == ET_ST_DELIVERED ? 200 : 500;
    out.error = st == ET_ST_DELIVERED ? NULL : "server error: HTTP 500";
    out.due = due;
    ck_assert_int_eq(et_outbox_finish(ob, ev, owner, &out), APR_SUCCESS);
}

START_TEST(claim_returns_the_stored_event)
{
    et_event_t *in = mk("s1", ET_OBJ_KEY, "k/1", ET_EV_CREATE, ET_ST_PENDING);
    apr_array_header_t *a = claim("d1", 10);
    et_event_t *out;

    ck_assert_int_eq(a->nelts, 1);
    out = EV(a, 0);
    ck_assert_str_eq(out->txn, in->txn);
    ck_assert_str_eq(out->site, "s1");
    ck_assert_int_eq(out->object, ET_OBJ_KEY);
    ck_assert_int_eq(out->event, ET_EV_CREATE);
    ck_assert_str_eq(out->oid, "k/1");
    ck_assert_str_eq(out->url, in->url);
    ck_assert_str_eq(out->body, in->body);
    ck_assert_int_eq(out->body_len, in->body_len);
    ck_assert_int_eq(out->attempts, 1);
    /* leased: a second claim gets nothing */
    ck_assert_int_eq(claim("d2", 10)->nelts, 0);
}
END_TEST

START_TEST(failed_events_are_kept_but_never_claimed)
{
    et_outbox_counts_t c;

    mk("s1", ET_OBJ_MEMBER, "m1", ET_EV_CREATE, ET_ST_FAILED);
    ck_assert_int_eq(claim("d1", 10)->nelts, 0);
    counts_s1(&c);
    ck_assert_int_eq(c.failed, 1);
    ck_assert_int_eq(c.pending, 0);
}
END_TEST

START_TEST(one_object_in_capture_order_others_in_parallel)
{
    et_event_t *c1 = mk("s1", ET_OBJ_MEMBER, "m1", ET_EV_CREATE, ET_ST_PENDING);
    et_event_t *o1 = mk("s1", ET_OBJ_MEMBER, "m2", ET_EV_CREATE, ET_ST_PENDING);
    et_event_t *u1 = mk("s1", ET_OBJ_MEMBER, "m1", ET_EV_UPDATE, ET_ST_PENDING);
    /* same id, other object type or other site: unrelated */
    et_event_t *k1 = mk("s1", ET_OBJ_KEY, "m1", ET_EV_CREATE, ET_ST_PENDING);
    et_event_t *s2 = mk("s2", ET_OBJ_MEMBER, "m1", ET_EV_CREATE, ET_ST_PENDING);
    apr_array_header_t *a = claim("d1", 10);

    ck_assert_int_eq(a->nelts, 4);
    ck_assert_str_eq(EV(a, 0)->txn, c1->txn);
    ck_assert_str_eq(EV(a, 1)->txn, o1->txn);
    ck_assert_str_eq(EV(a, 2)->txn, k1->txn);
    ck_assert_str_eq(EV(a, 3)->txn, s2->txn);

    /* the update waits while the create is in flight ... */
    ck_assert_int_eq(claim("d1", 10)->nelts, 0);
    /* ... and while it waits for a retry */
    finish(EV(a, 0), "d1", ET_ST_PENDING, apr_time_now() - 1);
    a = claim("d1", 10);
    ck_assert_int_eq(a->nelts, 1);
    ck_assert_str_eq(EV(a, 0)->txn, c1->txn);
    ck_assert_int_eq(EV(a, 0)->attempts, 2);
    finish(EV(a, 0), "d1", ET_ST_DELIVERED, 0);
    a = claim("d1", 10);
    ck_assert_int_eq(a->nelts, 1);
    ck_assert_str_eq(EV(a, 0)->txn, u1->txn);
}
END_TEST

START_TEST(a_retry_waits_until_due)
{
    apr_array_header_t *a;
    apr_time_t due;

    mk("s1", ET_OBJ_APPLICATION, "a1", ET_EV_UPDATE, ET_ST_PENDING);
    a = claim("d1", 1);
    ck_assert_int_eq(a->nelts, 1);
    finish(EV(a, 0), "d1", ET_ST_PENDING,
           apr_time_now() + apr_time_from_sec(60));
    ck_assert_int_eq(claim("d1", 1)->nelts, 0);
    ck_assert_int_eq(et_outbox_next_due(ob, apr_time_now(), &due),
                     APR_SUCCESS);
    ck_assert(due > apr_time_now() + apr_time_from_sec(50));
}
END_TEST

/* An event due now but not claimable (its object's earlier event waits for
 * a retry) does not hide that retry's time: a dispatcher sleeping until
 * "the next due" would otherwise wait a whole poll interval for it. */
START_TEST(the_next_due_skips_events_that_wait_behind_another)
{
    apr_array_header_t *a;
    apr_time_t due, now, retry_at;

    mk("s1", ET_OBJ_MEMBER, "m1", ET_EV_UPDATE, ET_ST_PENDING);
    a = claim("d1", 1);
    ck_assert_int_eq(a->nelts, 1);
    mk("s1", ET_OBJ_MEMBER, "m1", ET_EV_DELETE, ET_ST_PENDING);
    retry_at = apr_time_now() + apr_time_from_sec(5);
    finish(EV(a, 0), "d1", ET_ST_PENDING, retry_at);
    ck_assert_int_eq(claim("d1", 8)->nelts, 0);     /* the delete waits */
    now = apr_time_now();
    ck_assert_int_eq(et_outbox_next_due(ob, now, &due), APR_SUCCESS);
    ck_assert_msg(due == retry_at, "next due %" APR_TIME_T_FMT
                  " is not the retry's %" APR_TIME_T_FMT, due, retry_at);
    ck_assert_msg(et_outbox_next_due(ob, retry_at, &due) == APR_NOTFOUND,
                  "next due after the retry: %" APR_TIME_T_FMT " (retry %" APR_TIME_T_FMT ")", due, retry_at);
}
END_TEST

START_TEST(only_the_lease_holder_records_the_outcome)
{
    et_outcome_t out;
    apr_array_header_t *a;

    mk("s1", ET_OBJ_PACKAGE_KEY, "p1", ET_EV_DELETE, ET_ST_PENDING);
    a = claim("d1", 1);
    memset(&out, 0, sizeof(out));
    out.state = ET_ST_DELIVERED;
    out.status = 204;
    ck_assert_int_eq(et_outbox_finish(ob, EV(a, 0), "someone-else", &out),
                     APR_EBUSY);
    ck_assert_int_eq(et_outbox_finish(ob, EV(a, 0), "d1", &out),
                     APR_SUCCESS);
}
END_TEST

START_TEST(release_returns_leases_without_using_an_attempt)
{
    apr_array_header_t *a;

    mk("s1", ET_OBJ_MEMBER, "m1", ET_EV_CREATE, ET_ST_PENDING);
    a = claim("d1", 1);
    ck_assert_int_eq(EV(a, 0)->attempts, 1);
    ck_assert_int_eq(et_outbox_release(ob, "d1"), APR_SUCCESS);
    a = claim("d2", 1);
    ck_assert_int_eq(a->nelts, 1);
    ck_assert_int_eq(EV(a, 0)->attempts, 1);
}
END_TEST

START_TEST(counts_follow_the_states)
{
    et_outbox_counts_t c;
    apr_array_header_t *a;

    mk("s1", ET_OBJ_MEMBER, "m1", ET_EV_CREATE, ET_ST_PENDING);
    mk("s1", ET_OBJ_MEMBER, "m2", ET_EV_CREATE, ET_ST_PENDING);
    mk("s1", ET_OBJ_MEMBER, "m3", ET_EV_CREATE, ET_ST_PENDING);
    a = claim("d1", 2);
    finish(EV(a, 0), "d1", ET_ST_DELIVERED, 0);
    finish(EV(a, 1), "d1", ET_ST_DEAD, 0);
    claim("d1", 1);
    counts_s1(&c);
    ck_assert_int_eq(c.delivered, 1);
    ck_assert_int_eq(c.dead, 1);
    ck_assert_int_eq(c.pending, 1);
    ck_assert_int_eq(c.leased, 1);
    ck_assert(c.oldest_pending > 0);
}
END_TEST

/* A child that was not told the intake stored its event stores it again
 * (et_intake.h): the second insert succeeds and leaves one event, whole
 * batches included. */
START_TEST(a_txn_is_stored_once)
{
    et_event_t *ev = mk("s1", ET_OBJ_MEMBER, "m1", ET_EV_CREATE,
                        ET_ST_PENDING);
    et_event_t *other = mk("s1", ET_OBJ_MEMBER, "m2", ET_EV_CREATE,
                           ET_ST_PENDING);
    et_event_t *evs[2] = { other, ev };
    apr_status_t each[2] = { APR_EGENERAL, APR_EGENERAL };
    et_outbox_counts_t c;

    ck_assert_int_eq(et_outbox_insert(ob, ev), APR_SUCCESS);
    ck_assert_int_eq(et_outbox_insert_batch(ob, evs, 2, each), APR_SUCCESS);
    ck_assert_int_eq(each[0], APR_SUCCESS);
    ck_assert_int_eq(each[1], APR_SUCCESS);
    counts_s1(&c);
    ck_assert_int_eq(c.pending, 2);
}
END_TEST

START_TEST(a_fresh_event_is_stored_leased_when_first_of_its_object)
{
    et_event_t *e1 = mk_leased("s1", "m1", ET_ST_PENDING, "A");
    et_event_t *e2, *e3, *dup, *bad;
    apr_array_header_t *a;
    et_outbox_counts_t c;

    /* first of m1: leased to A, its attempt counted, its row known */
    ck_assert_ptr_nonnull(e1->lease_owner);
    ck_assert_str_eq(e1->lease_owner, "A");
    ck_assert_int_gt(e1->rowid, 0);
    ck_assert_int_eq(e1->attempts, 1);
    ck_assert_int_eq(claim("B", 10)->nelts, 0);

    /* m1 has a pending event: the next waits its turn; m2 does not */
    e2 = mk_leased("s1", "m1", ET_ST_PENDING, "A");
    ck_assert_ptr_null(e2->lease_owner);
    e3 = mk_leased("s1", "m2", ET_ST_PENDING, "A");
    ck_assert_ptr_nonnull(e3->lease_owner);
    ck_assert_int_gt(e3->rowid, e1->rowid);

    /* a txn stored already is neither stored again nor leased */
    dup = build("s1", ET_OBJ_MEMBER, "m9", ET_EV_UPDATE, ET_ST_PENDING);
    dup->txn = e2->txn;
    dup->lease_owner = "A";
    dup->lease_until = apr_time_now() + apr_time_from_sec(30);
    ck_assert_int_eq(et_outbox_insert(ob, dup), APR_SUCCESS);
    ck_assert_ptr_null(dup->lease_owner);

    /* an event that failed at capture is kept, never leased */
    bad = mk_leased("s1", "m3", ET_ST_FAILED, "A");
    ck_assert_ptr_null(bad->lease_owner);

    counts_s1(&c);
    ck_assert_int_eq(c.pending, 3);
    ck_assert_int_eq(c.leased, 2);
    ck_assert_int_eq(c.failed, 1);

    /* A holds e1 by its row: its outcome is A's to write, and m1's next
     * event is claimable once it is delivered, by anyone */
    finish(e1, "A", ET_ST_DELIVERED, 0);
    a = claim("B", 10);
    ck_assert_int_eq(a->nelts, 1);
    ck_assert_str_eq(EV(a, 0)->txn, e2->txn);
    finish(e3, "A", ET_ST_DELIVERED, 0);
    counts_s1(&c);
    ck_assert_int_eq(c.delivered, 2);
}
END_TEST

START_TEST(bad_specs_are_refused_with_a_reason)
{
    et_outbox_t *o2 = NULL;
    const char *err = NULL;

    ck_assert_int_ne(et_outbox_open(&o2, ut_pool, "mysql:x", 1, &err),
                     APR_SUCCESS);
    ck_assert_ptr_nonnull(strstr(err, "unknown outbox driver"));
    err = NULL;
    ck_assert_int_ne(et_outbox_open(&o2, ut_pool, "nocolon", 1, &err),
                     APR_SUCCESS);
    ck_assert_ptr_nonnull(strstr(err, "sqlite3:PATH"));
    err = NULL;
    ck_assert_int_ne(et_outbox_open(&o2, ut_pool,
                                    "sqlite3:/nonexistent/dir/x.db", 1, &err),
                     APR_SUCCESS);
    ck_assert_ptr_nonnull(err);
}
END_TEST

START_TEST(claims_are_per_site_and_health_rows_are_kept)
{
    et_circuit_row_t row;
    apr_array_header_t *a, *rows, *sites;

    mk("s1", ET_OBJ_MEMBER, "m1", ET_EV_CREATE, ET_ST_PENDING);
    mk("s2", ET_OBJ_MEMBER, "m1", ET_EV_CREATE, ET_ST_PENDING);
    ck_assert_int_eq(et_outbox_pending_sites(ob, ut_pool, &sites),
                     APR_SUCCESS);
    ck_assert_int_eq(sites->nelts, 2);
    ck_assert_int_eq(et_outbox_claim(ob, ut_pool, "s2", "d1",
                                     apr_time_from_sec(30), 10, &a),
                     APR_SUCCESS);
    ck_assert_int_eq(a->nelts, 1);
    ck_assert_str_eq(EV(a, 0)->site, "s2");

    memset(&row, 0, sizeof(row));
    row.site = "s1";
    row.state = 1;
    row.failures = 5;
    row.open_until = apr_time_now() + apr_time_from_sec(60);
    row.changed = apr_time_now();
    row.last_error = "no answer";
    ck_assert_int_eq(et_outbox_circuit_set(ob, &row), APR_SUCCESS);
    /* the same site again is an update, not a second row */
    row.open_until = 0;
    row.state = 0;
    ck_assert_int_eq(et_outbox_circuit_set(ob, &row), APR_SUCCESS);
    ck_assert_int_eq(et_outbox_circuits(ob, ut_pool, &rows), APR_SUCCESS);
    ck_assert_int_eq(rows->nelts, 1);
    ck_assert_int_eq(APR_ARRAY_IDX(rows, 0, et_circuit_row_t *)->failures, 5);
    ck_assert_int_eq(APR_ARRAY_IDX(rows, 0, et_circuit_row_t *)->state, 0);
}
END_TEST

START_TEST(an_expired_lease_is_claimed_again)
{
    et_event_t *e = mk("s1", ET_OBJ_MEMBER, "m1", ET_EV_CREATE, ET_ST_PENDING);
    apr_array_header_t *a = NULL;

    /* a dispatcher that died mid-call: its short lease runs out */
    ck_assert_int_eq(et_outbox_claim(ob, ut_pool, "s1", "dead",
                                     apr_time_from_msec(1), 1, &a),
                     APR_SUCCESS);
    ck_assert_int_eq(a->nelts, 1);
    apr_sleep(apr_time_from_msec(5));
    a = claim("d2", 1);
    ck_assert_int_eq(a->nelts, 1);
    ck_assert_str_eq(EV(a, 0)->txn, e->txn);
    ck_assert_int_eq(EV(a, 0)->attempts, 2);
    /* and the old holder can no longer record an outcome */
    {
        et_outcome_t out;
        memset(&out, 0, sizeof(out));
        out.state = ET_ST_DELIVERED;
        ck_assert_int_eq(et_outbox_finish(ob, EV(a, 0), "dead", &out),
                         APR_EBUSY);
    }
}
END_TEST

/* The same dispatcher's lease ran out (a wall clock that jumped, a call
 * that overran) and it claimed the event again: the first job's outcome
 * or give-back must not touch the second lease, or the object's next
 * event would go out while the event is still being called. */
START_TEST(an_outcome_counts_for_its_own_lease_only)
{
    et_event_t *e = mk("s1", ET_OBJ_MEMBER, "m1", ET_EV_CREATE, ET_ST_PENDING);
    apr_array_header_t *a = NULL, *b = NULL;
    et_outcome_t out;

    ck_assert_int_eq(et_outbox_claim(ob, ut_pool, "s1", "d1",
                                     apr_time_from_msec(1), 1, &a),
                     APR_SUCCESS);
    ck_assert_int_eq(a->nelts, 1);
    apr_sleep(apr_time_from_msec(5));
    ck_assert_int_eq(et_outbox_claim(ob, ut_pool, "s1", "d1",
                                     apr_time_from_sec(30), 1, &b),
                     APR_SUCCESS);
    ck_assert_int_eq(b->nelts, 1);
    ck_assert_str_eq(EV(b, 0)->txn, e->txn);

    memset(&out, 0, sizeof(out));
    out.state = ET_ST_DELIVERED;
    out.status = 200;
    ck_assert_int_eq(et_outbox_finish(ob, EV(a, 0), "d1", &out), APR_EBUSY);
    ck_assert_int_eq(et_outbox_unclaim(ob, EV(a, 0), "d1"), APR_SUCCESS);
    /* the second lease still holds: nothing to claim, and its outcome
     * is the one recorded */
    ck_assert_int_eq(claim("d2", 1)->nelts, 0);
    ck_assert_int_eq(et_outbox_finish(ob, EV(b, 0), "d1", &out), APR_SUCCESS);
}
END_TEST

START_TEST(unclaim_gives_back_without_an_attempt)
{
    apr_array_header_t *a;

    mk("s1", ET_OBJ_KEY, "k1", ET_EV_UPDATE, ET_ST_PENDING);
    a = claim("d1", 1);
    ck_assert_int_eq(et_outbox_unclaim(ob, EV(a, 0), "d1"), APR_SUCCESS);
    a = claim("d1", 1);
    ck_assert_int_eq(a->nelts, 1);
    ck_assert_int_eq(EV(a, 0)->attempts, 1);
}
END_TEST

START_TEST(replay_puts_dead_letters_back_with_their_txn)
{
    et_event_t *d1 = mk("s1", ET_OBJ_MEMBER, "m1", ET_EV_CREATE,
                        ET_ST_PENDING);
    et_event_t *shown = NULL;
    apr_array_header_t *a;
    int n = -1;

    a = claim("d1", 1);
    finish(EV(a, 0), "d1", ET_ST_DEAD, 0);
    ck_assert_int_eq(et_outbox_show(ob, ut_pool, d1->txn, &shown),
                     APR_SUCCESS);
    ck_assert_int_eq(shown->state, ET_ST_DEAD);
    ck_assert_int_eq(shown->last_status, 500);
    ck_assert_str_eq(shown->error, "server error: HTTP 500");
    ck_assert_int_eq(et_outbox_list(ob, ut_pool, ET_ST_DEAD, 10, &a),
                     APR_SUCCESS);
    ck_assert_int_eq(a->nelts, 1);

    ck_assert_int_eq(et_outbox_replay(ob, "0000", 0, &n), APR_SUCCESS);
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(et_outbox_replay(ob, d1->txn, 0, &n), APR_SUCCESS);
    ck_assert_int_eq(n, 1);
    a = claim("d1", 1);
    ck_assert_int_eq(a->nelts, 1);
    ck_assert_str_eq(EV(a, 0)->txn, d1->txn);
    ck_assert_int_eq(EV(a, 0)->attempts, 1);
    finish(EV(a, 0), "d1", ET_ST_DEAD, 0);
    /* by time: captured at or after since */
    ck_assert_int_eq(et_outbox_replay(ob, NULL, apr_time_now()
                                      + apr_time_from_sec(5), &n),
                     APR_SUCCESS);
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(et_outbox_replay(ob, NULL, 0, &n), APR_SUCCESS);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(et_outbox_show(ob, ut_pool, "nope", &shown),
                     APR_NOTFOUND);
}
END_TEST

START_TEST(site_counts_and_recent_errors)
{
    apr_array_header_t *a, *sites;
    et_site_counts_t *c;

    mk("a", ET_OBJ_MEMBER, "m1", ET_EV_CREATE, ET_ST_PENDING);
    mk("a", ET_OBJ_MEMBER, "m2", ET_EV_CREATE, ET_ST_PENDING);
    mk("b", ET_OBJ_MEMBER, "m3", ET_EV_CREATE, ET_ST_FAILED);
    a = claim("d1", 1);
    finish(EV(a, 0), "d1", ET_ST_PENDING, apr_time_now() + apr_time_from_sec(9));
    ck_assert_int_eq(et_outbox_site_counts(ob, ut_pool, &sites), APR_SUCCESS);
    ck_assert_int_eq(sites->nelts, 2);
    c = APR_ARRAY_IDX(sites, 0, et_site_counts_t *);
    ck_assert_str_eq(c->site, "a");
    ck_assert_int_eq(c->counts.pending, 2);
    ck_assert_int_eq(c->retrying, 1);
    c = APR_ARRAY_IDX(sites, 1, et_site_counts_t *);
    ck_assert_str_eq(c->site, "b");
    ck_assert_int_eq(c->counts.failed, 1);
    ck_assert_int_eq(et_outbox_recent_errors(ob, ut_pool, 10, &a),
                     APR_SUCCESS);
    ck_assert_int_eq(a->nelts, 2);
}
END_TEST

START_TEST(latencies_are_per_site_and_retries_lead_recent_failures)
{
    apr_array_header_t *a, *lat;
    et_event_t *retrying;
    int i;

    for (i = 0; i < 3; i++) {
        mk("a", ET_OBJ_MEMBER, apr_itoa(ut_pool, i), ET_EV_CREATE,
           ET_ST_PENDING);
    }
    mk("b", ET_OBJ_MEMBER, "x", ET_EV_CREATE, ET_ST_PENDING);
    a = claim("d1", 10);
    ck_assert_int_eq(a->nelts, 4);
    for (i = 0; i < 4; i++) {
        finish(EV(a, i), "d1", ET_ST_DELIVERED, 0);
    }
    ck_assert_int_eq(et_outbox_latencies(ob, ut_pool, "a", 10, &lat),
                     APR_SUCCESS);
    ck_assert_int_eq(lat->nelts, 3);
    ck_assert_str_eq(APR_ARRAY_IDX(lat, 0, et_latency_t).site, "a");
    ck_assert_int_eq(et_outbox_latencies(ob, ut_pool, "b", 10, &lat),
                     APR_SUCCESS);
    ck_assert_int_eq(lat->nelts, 1);

    /* a dead letter, then an event waiting for its retry: the retry is
     * the newer failure and comes first */
    mk("a", ET_OBJ_KEY, "k1", ET_EV_CREATE, ET_ST_PENDING);
    a = claim("d1", 1);
    finish(EV(a, 0), "d1", ET_ST_DEAD, 0);
    retrying = mk("a", ET_OBJ_KEY, "k2", ET_EV_CREATE, ET_ST_PENDING);
    a = claim("d1", 1);
    finish(EV(a, 0), "d1", ET_ST_PENDING,
           apr_time_now() + apr_time_from_sec(30));
    ck_assert_int_eq(et_outbox_recent_errors(ob, ut_pool, 1, &a),
                     APR_SUCCESS);
    ck_assert_int_eq(a->nelts, 1);
    ck_assert_str_eq(EV(a, 0)->txn, retrying->txn);
}
END_TEST

START_TEST(prune_deletes_only_old_finished_events)
{
    apr_array_header_t *a;
    apr_time_t later = apr_time_now() + apr_time_from_sec(10);
    et_outbox_counts_t c;
    int n = -1;

    mk("s1", ET_OBJ_MEMBER, "m1", ET_EV_CREATE, ET_ST_PENDING);
    mk("s1", ET_OBJ_MEMBER, "m2", ET_EV_CREATE, ET_ST_PENDING);
    mk("s1", ET_OBJ_MEMBER, "m3", ET_EV_CREATE, ET_ST_PENDING);
    mk("s1", ET_OBJ_MEMBER, "m4", ET_EV_CREATE, ET_ST_FAILED);
    a = claim("d1", 2);
    finish(EV(a, 0), "d1", ET_ST_DELIVERED, 0);
    finish(EV(a, 1), "d1", ET_ST_DEAD, 0);
    /* nothing is old yet */
    ck_assert_int_eq(et_outbox_prune(ob, apr_time_now() - apr_time_from_sec(60),
                                     apr_time_now() - apr_time_from_sec(60),
                                     100, &n), APR_SUCCESS);
    ck_assert_int_eq(n, 0);
    /* delivered only (dead kept: 0) */
    ck_assert_int_eq(et_outbox_prune(ob, later, 0, 100, &n), APR_SUCCESS);
    ck_assert_int_eq(n, 1);
    /* dead and failed; a pending event is never deleted */
    ck_assert_int_eq(et_outbox_prune(ob, later, later, 1, &n), APR_SUCCESS);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(et_outbox_prune(ob, later, later, 100, &n), APR_SUCCESS);
    ck_assert_int_eq(n, 1);
    counts_s1(&c);
    ck_assert_int_eq(c.pending, 1);
    ck_assert_int_eq(c.delivered + c.dead + c.failed, 0);
}
END_TEST

/* Group commit: many threads store at once; every one returns success
 * only when its event is in the outbox, and none is lost or doubled. */
#define CT_THREADS 8
#define CT_EACH 60

typedef struct ct_arg_t {
    et_committer_t *c;
    int n;
    int failed;
} ct_arg_t;

static void *APR_THREAD_FUNC ct_store(apr_thread_t *thd, void *data)
{
    ct_arg_t *a = data;
    apr_pool_t *p;
    int i;

    apr_pool_create(&p, NULL);
    for (i = 0; i < CT_EACH; i++) {
        et_event_t *ev = apr_pcalloc(p, sizeof(*ev));
        const char *err = NULL;

        if (et_txn_new(p, &ev->txn) != APR_SUCCESS) {
            a->failed++;
            continue;
        }
        ev->site = "s1";
        ev->object = ET_OBJ_MEMBER;
        ev->event = ET_EV_UPDATE;
        ev->oid = apr_psprintf(p, "t%d-%d", a->n, i);
        ev->url = et_url_build(p, "http://r.example/h", ev->object, ev->oid,
                               ev->event, ev->txn);
        ev->body = "{}";
        ev->body_len = 2;
        ev->state = ET_ST_PENDING;
        if (et_committer_store(a->c, ev, p, &err) != APR_SUCCESS) {
            a->failed++;
        }
    }
    apr_pool_destroy(p);
    (void)thd;                        /* returns: see et_checkpoint.c */
    return NULL;
}

START_TEST(group_commit_stores_every_thread_s_events)
{
    et_committer_t *c;
    apr_thread_t *t[CT_THREADS];
    ct_arg_t args[CT_THREADS];
    et_outbox_counts_t n;
    apr_status_t rv;
    int i, failed = 0;

    ck_assert_int_eq(et_committer_create(&c, ut_pool,
                                         apr_pstrcat(ut_pool, "sqlite3:",
                                                     dbdir, "/outbox.db",
                                                     NULL), NULL, 16),
                     APR_SUCCESS);
    for (i = 0; i < CT_THREADS; i++) {
        args[i].c = c;
        args[i].n = i;
        args[i].failed = 0;
        ck_assert_int_eq(apr_thread_create(&t[i], NULL, ct_store, &args[i],
                                           ut_pool), APR_SUCCESS);
    }
    for (i = 0; i < CT_THREADS; i++) {
        apr_thread_join(&rv, t[i]);
        failed += args[i].failed;
    }
    ck_assert_int_eq(failed, 0);
    counts_s1(&n);
    ck_assert_int_eq(n.pending, CT_THREADS * CT_EACH);
}
END_TEST

/* APR-util exports these for its drivers; their header
 * (apr_dbd_internal.h) is not installed. */
apr_status_t apr_dbd_mutex_lock(void);
apr_status_t apr_dbd_mutex_unlock(void);

typedef struct cp_arg_t {
    et_outbox_t *ob;
    apr_status_t rv;
    volatile apr_uint32_t done;
} cp_arg_t;

static void *APR_THREAD_FUNC cp_run(apr_thread_t *thd, void *data)
{
    cp_arg_t *a = data;

    a->rv = et_outbox_checkpoint(a->ob);
    apr_atomic_set32(&a->done, 1);
    (void)thd;                        /* returns: see et_checkpoint.c */
    return NULL;
}

/* The checkpointer copies the log into the file while another thread of
 * the process is in a statement: apr_dbd's sqlite3 driver holds one
 * mutex of the process across each, and a checkpoint that waited for it
 * (or held it across its fsync) stopped the dispatcher's other threads. */
START_TEST(a_checkpoint_goes_on_while_another_thread_is_in_a_statement)
{
    const char *file = apr_pstrcat(ut_pool, dbdir, "/outbox.db", NULL);
    const char *err = NULL;
    et_outbox_t *ck;
    apr_finfo_t before, after;
    apr_thread_t *t;
    apr_status_t rv;
    apr_time_t deadline;
    cp_arg_t a;
    int i, done;

    for (i = 0; i < 200; i++) {
        mk("s1", ET_OBJ_MEMBER, apr_psprintf(ut_pool, "m%d", i), ET_EV_UPDATE,
           ET_ST_PENDING);
    }
    /* until a checkpoint, the events are in the log, not the file */
    ck_assert_int_eq(apr_stat(&before, file, APR_FINFO_SIZE, ut_pool),
                     APR_SUCCESS);
    ck_assert_msg(et_outbox_open(&ck, ut_pool,
                                 apr_pstrcat(ut_pool, "sqlite3:", file, NULL),
                                 0, &err) == APR_SUCCESS,
                  "open: %s", err ? err : "?");
    memset(&a, 0, sizeof(a));
    a.ob = ck;
    apr_dbd_mutex_lock();             /* as another thread's statement */
    ck_assert_int_eq(apr_thread_create(&t, NULL, cp_run, &a, ut_pool),
                     APR_SUCCESS);
    /* within check's own time limit, so that a wait is reported here */
    deadline = apr_time_now() + apr_time_from_sec(3);
    while (!apr_atomic_read32(&a.done) && apr_time_now() < deadline) {
        apr_sleep(apr_time_from_msec(5));
    }
    done = apr_atomic_read32(&a.done);
    apr_dbd_mutex_unlock();
    apr_thread_join(&rv, t);
    ck_assert_msg(done, "the checkpoint waited for the driver's mutex");
    ck_assert_int_eq(a.rv, APR_SUCCESS);
    ck_assert_int_eq(apr_stat(&after, file, APR_FINFO_SIZE, ut_pool),
                     APR_SUCCESS);
    ck_assert_int_gt(after.size, before.size);
    et_outbox_close(ck);
}
END_TEST

/* The index names of the outbox at dbdir, comma-separated, sorted. */
static const char *sqlite_indexes(void)
{
    const apr_dbd_driver_t *drv;
    apr_dbd_t *db = NULL;
    apr_dbd_results_t *res = NULL;
    apr_dbd_row_t *row = NULL;
    const char *names = NULL;

    ck_assert_int_eq(apr_dbd_get_driver(ut_pool, "sqlite3", &drv),
                     APR_SUCCESS);
    ck_assert_int_eq(apr_dbd_open(drv, ut_pool,
                                  apr_pstrcat(ut_pool, dbdir, "/outbox.db",
                                              NULL), &db), APR_SUCCESS);
    ck_assert_int_eq(apr_dbd_select(drv, ut_pool, db, &res,
                                    "SELECT group_concat(name) FROM"
                                    " (SELECT name FROM sqlite_master"
                                    "  WHERE type = 'index' AND tbl_name ="
                                    "  'et_event' AND name LIKE 'et_%'"
                                    "  ORDER BY name)", 0), 0);
    while (apr_dbd_get_row(drv, ut_pool, res, &row, -1) == 0) {
        names = apr_pstrdup(ut_pool, apr_dbd_get_entry(drv, row, 0));
    }
    apr_dbd_close(drv, db);
    return names ? names : "";
}

/* An outbox made by an earlier version (an index on (state, due), the
 * ordering index over every event, the line of pending events only,
 * every event in et_event_claim) is brought up to date when it is
 * opened, and its pending events keep their order. */
START_TEST(an_older_outbox_gets_the_current_indexes)
{
    const apr_dbd_driver_t *drv;
    apr_dbd_t *db = NULL;
    const char *err = NULL;
    et_event_t *c1 = mk("s1", ET_OBJ_MEMBER, "m1", ET_EV_CREATE, ET_ST_PENDING);
    apr_array_header_t *a;
    int nrows;

    mk("s1", ET_OBJ_MEMBER, "m1", ET_EV_UPDATE, ET_ST_PENDING);
    ck_assert_str_eq(sqlite_indexes(), "et_event_done,et_event_head,"
                     "et_event_head_object,et_event_leased,et_event_line");
    et_outbox_close(ob);
    ck_assert_int_eq(apr_dbd_get_driver(ut_pool, "sqlite3", &drv),
                     APR_SUCCESS);
    ck_assert_int_eq(apr_dbd_open(drv, ut_pool,
                                  apr_pstrcat(ut_pool, dbdir, "/outbox.db",
                                              NULL), &db), APR_SUCCESS);
    ck_assert_int_eq(apr_dbd_query(drv, db, &nrows,
                                   "DROP INDEX et_event_line"), 0);
    ck_assert_int_eq(apr_dbd_query(drv, db, &nrows,
                                   "DROP INDEX et_event_head_object"), 0);
    /* the previous release's: pending events only */
    ck_assert_int_eq(apr_dbd_query(drv, db, &nrows,
                                   "CREATE INDEX et_event_order ON et_event"
                                   " (site, object, oid, id)"
                                   " WHERE state = 0"), 0);
    ck_assert_int_eq(apr_dbd_query(drv, db, &nrows,
                                   "CREATE INDEX et_event_object ON et_event"
                                   " (site, object, oid, state, id)"), 0);
    ck_assert_int_eq(apr_dbd_query(drv, db, &nrows,
                                   "CREATE INDEX et_event_due ON et_event"
                                   " (state, due)"), 0);
    /* every event in it, pending ones too: before et_event_done */
    ck_assert_int_eq(apr_dbd_query(drv, db, &nrows,
                                   "DROP INDEX et_event_done"), 0);
    ck_assert_int_eq(apr_dbd_query(drv, db, &nrows,
                                   "CREATE INDEX et_event_claim ON et_event"
                                   " (site, state, due)"), 0);
    apr_dbd_close(drv, db);
    ck_assert_str_eq(sqlite_indexes(), "et_event_claim,et_event_due,"
                     "et_event_head,et_event_leased,et_event_object,"
                     "et_event_order");

    ck_assert_msg(et_outbox_open(&ob, ut_pool,
                                 apr_pstrcat(ut_pool, "sqlite3:", dbdir,
                                             "/outbox.db", NULL), 1, &err)
                  == APR_SUCCESS, "open: %s", err ? err : "?");
    ck_assert_str_eq(sqlite_indexes(), "et_event_done,et_event_head,"
                     "et_event_head_object,et_event_leased,et_event_line");
    a = claim("d1", 10);
    ck_assert_int_eq(a->nelts, 1);
    ck_assert_str_eq(EV(a, 0)->txn, c1->txn);
}
END_TEST


/* An event with what it keeps from the admin's request. */
static et_event_t *with_context(et_event_t *ev, const char *n)
{
    ev->traceparent = apr_psprintf(ut_pool, "00-%s-00f067aa0ba902b7-01",
                                   ev->txn);
    ev->tracestate = apr_pstrcat(ut_pool, "rojo=", n, ",congo=t61rcWkgMzE",
                                 NULL);
    ev->headers = apr_pstrcat(ut_pool, "X-Admin-User: ", n,
                              "\nX-Request-Id: r-", n, NULL);
    return ev;
}

/* a macro: a failure names the line of the check */
#define assert_context(got, want) do {                                  \
        ck_assert_str_eq((got)->traceparent, (want)->traceparent);      \
        ck_assert_str_eq((got)->tracestate, (want)->tracestate);        \
        ck_assert_str_eq((got)->headers, (want)->headers);              \
    } while (0)

/* Trace context and expression headers are stored with the event and
 * read back by every statement that reads events: claim, show, list,
 * recent failures; through the plain insert and the leased one. */
START_TEST(trace_context_and_headers_are_kept_with_the_event)
{
    et_event_t *e1 = with_context(build("s1", ET_OBJ_MEMBER, "m1",
                                        ET_EV_CREATE, ET_ST_PENDING), "alice");
    et_event_t *e2 = with_context(build("s2", ET_OBJ_KEY, "k1",
                                        ET_EV_UPDATE, ET_ST_PENDING), "bob");
    et_event_t *plain = mk("s1", ET_OBJ_MEMBER, "m9", ET_EV_CREATE,
                           ET_ST_PENDING);
    apr_array_header_t *a;
    et_event_t *got;
    int i, seen = 0;

    ck_assert_int_eq(et_outbox_insert(ob, e1), APR_SUCCESS);
    e2->lease_owner = "d1";
    e2->lease_until = apr_time_now() + apr_time_from_sec(30);
    ck_assert_int_eq(et_outbox_insert(ob, e2), APR_SUCCESS);
    ck_assert_ptr_nonnull(e2->lease_owner);       /* stored leased */

    ck_assert_int_eq(et_outbox_show(ob, ut_pool, e2->txn, &got), APR_SUCCESS);
    assert_context(got, e2);
    a = claim("d1", 10);
    ck_assert_int_eq(a->nelts, 2);
    ck_assert_str_eq(EV(a, 0)->txn, plain->txn);  /* stored first */
    ck_assert_ptr_null(EV(a, 0)->traceparent);    /* none: NULL, not "" */
    ck_assert_ptr_null(EV(a, 0)->tracestate);
    ck_assert_ptr_null(EV(a, 0)->headers);
    assert_context(EV(a, 1), e1);
    finish(EV(a, 1), "d1", ET_ST_PENDING,
           apr_time_now() + apr_time_from_sec(9));
    ck_assert_int_eq(et_outbox_recent_errors(ob, ut_pool, 10, &a),
                     APR_SUCCESS);
    ck_assert_int_eq(a->nelts, 1);
    assert_context(EV(a, 0), e1);
    ck_assert_int_eq(et_outbox_list(ob, ut_pool, -1, 10, &a), APR_SUCCESS);
    for (i = 0; i < a->nelts; i++) {
        if (!strcmp(EV(a, i)->txn, e1->txn)) {
            assert_context(EV(a, i), e1);
            seen++;
        }
        else if (!strcmp(EV(a, i)->txn, e2->txn)) {
            assert_context(EV(a, i), e2);
            seen++;
        }
    }
    ck_assert_int_eq(seen, 2);
}
END_TEST

/* The event table as outboxes made before trace context had it. */
#define OLD_EVENT_TABLE(PK, TIME)                                       \
    "CREATE TABLE et_event (id " PK ", txn TEXT NOT NULL UNIQUE,"       \
    " site TEXT NOT NULL, object TEXT NOT NULL, event TEXT NOT NULL,"   \
    " oid TEXT NOT NULL, url TEXT, content_type TEXT, body TEXT,"       \
    " state INTEGER NOT NULL DEFAULT 0,"                                \
    " attempts INTEGER NOT NULL DEFAULT 0, created " TIME " NOT NULL,"  \
    " due " TIME " NOT NULL, lease_until " TIME " NOT NULL DEFAULT 0,"  \
    " lease_owner TEXT, last_status INTEGER, last_error TEXT,"          \
    " error TEXT, done_at " TIME ", latency " TIME ")"

/*
 * The test's outbox closed and its event table made again as outboxes
 * made before trace context had it, with no recorded version: a raw
 * connection to it (*spec: its driver's parameters).
 */
static apr_dbd_t *old_outbox(const apr_dbd_driver_t **drv, const char **spec)
{
    apr_dbd_t *db = NULL;
    const char *err = NULL;
    int nrows, pg = !dbdir[0];

    et_outbox_close(ob);
    ob = NULL;
    ck_assert_int_eq(apr_dbd_get_driver(ut_pool, pg ? "pgsql" : "sqlite3",
                                        drv), APR_SUCCESS);
    *spec = pg ? getenv("ET_TEST_PGSQL")
               : apr_pstrcat(ut_pool, dbdir, "/outbox.db", NULL);
    ck_assert_int_eq(apr_dbd_open_ex(*drv, ut_pool, *spec, &db, &err),
                     APR_SUCCESS);
    ck_assert_int_eq(apr_dbd_query(*drv, db, &nrows, "DROP TABLE et_event"),
                     0);
    ck_assert_int_eq(apr_dbd_query(*drv, db, &nrows, "DROP TABLE et_meta"),
                     0);
    ck_assert_int_eq(apr_dbd_query(*drv, db, &nrows, pg
                     ? OLD_EVENT_TABLE("BIGSERIAL PRIMARY KEY", "BIGINT")
                     : OLD_EVENT_TABLE("INTEGER PRIMARY KEY AUTOINCREMENT",
                                       "INTEGER")), 0);
    return db;
}

/* An outbox made before the trace context columns: opened (as httpd's
 * startup opens it), it gets them; its events are claimed with none, and
 * new events keep theirs. */
START_TEST(an_outbox_without_trace_columns_gets_them)
{
    const apr_dbd_driver_t *drv;
    apr_dbd_t *db;
    const char *err = NULL, *spec, *old_txn;
    et_event_t *e1, *got;
    apr_array_header_t *a;
    int nrows, pg = !dbdir[0];

    db = old_outbox(&drv, &spec);
    ck_assert_int_eq(et_txn_new(ut_pool, &old_txn), APR_SUCCESS);
    ck_assert_int_eq(apr_dbd_query(drv, db, &nrows, apr_psprintf(ut_pool,
                     "INSERT INTO et_event (txn, site, object, event, oid,"
                     " url, content_type, body, created, due) VALUES ('%s',"
                     " 's1', 'member', 'post-create', 'old', 'http://r/h',"
                     " 'application/json', '{}', 1, 1)", old_txn)), 0);
    apr_dbd_close(drv, db);

    spec = pg ? apr_pstrcat(ut_pool, "pgsql:", spec, NULL)
              : apr_pstrcat(ut_pool, "sqlite3:", spec, NULL);
    if (!pg) {
        /* without create (etctl, the dispatcher) the table is left as it
         * is, and SQLite checks the statements at once (PostgreSQL's
         * driver only when they run) */
        ck_assert_int_ne(et_outbox_open(&ob, ut_pool, spec, 0, &err),
                         APR_SUCCESS);
    }
    ck_assert_msg(et_outbox_open(&ob, ut_pool, spec, 1, &err) == APR_SUCCESS,
                  "open: %s", err ? err : "?");
    e1 = with_context(build("s1", ET_OBJ_MEMBER, "new", ET_EV_CREATE,
                            ET_ST_PENDING), "carol");
    ck_assert_int_eq(et_outbox_insert(ob, e1), APR_SUCCESS);
    a = claim("d1", 10);
    ck_assert_int_eq(a->nelts, 2);
    ck_assert_str_eq(EV(a, 0)->txn, old_txn);
    ck_assert_ptr_null(EV(a, 0)->traceparent);
    ck_assert_ptr_null(EV(a, 0)->headers);
    assert_context(EV(a, 1), e1);
    ck_assert_int_eq(et_outbox_show(ob, ut_pool, e1->txn, &got), APR_SUCCESS);
    assert_context(got, e1);

    /* opened again: the columns are there, nothing to add */
    et_outbox_close(ob);
    ck_assert_msg(et_outbox_open(&ob, ut_pool, spec, 1, &err) == APR_SUCCESS,
                  "open again: %s", err ? err : "?");
    ck_assert_int_eq(et_outbox_show(ob, ut_pool, e1->txn, &got), APR_SUCCESS);
    assert_context(got, e1);
}
END_TEST


/* Finish every event of @a a as @a st (owner d1). */
static void finish_all(apr_array_header_t *a, et_state_e st)
{
    int i;

    for (i = 0; i < a->nelts; i++) {
        finish(EV(a, i), "d1", st, 0);
    }
}

/* One object with a backlog behind its head (issue 14): only the head is
 * ever claimed; a retry holds the line; a delivered or dead head lets the
 * next one go, in the finish itself; other objects are not held up, and
 * the next due time is the head's retry, not the backlog's. */
START_TEST(only_an_object_s_head_is_claimed)
{
    et_event_t *hot[50], *line[20], *other;
    apr_array_header_t *a;
    apr_time_t due, retry_at;
    int i;

    for (i = 0; i < 50; i++) {
        hot[i] = mk("s1", ET_OBJ_MEMBER, "hot", ET_EV_UPDATE, ET_ST_PENDING);
    }
    other = mk("s1", ET_OBJ_MEMBER, "cold", ET_EV_UPDATE, ET_ST_PENDING);
    a = claim("d1", 100);
    ck_assert_int_eq(a->nelts, 2);
    ck_assert_str_eq(EV(a, 0)->txn, hot[0]->txn);
    ck_assert_str_eq(EV(a, 1)->txn, other->txn);
    finish(EV(a, 1), "d1", ET_ST_DELIVERED, 0);
    /* a retry due at once: the head again, alone */
    finish(EV(a, 0), "d1", ET_ST_PENDING, apr_time_now() - 1);
    a = claim("d1", 100);
    ck_assert_int_eq(a->nelts, 1);
    ck_assert_str_eq(EV(a, 0)->txn, hot[0]->txn);
    ck_assert_int_eq(EV(a, 0)->attempts, 2);
    /* a retry later: nothing, and the next due time is the retry's */
    retry_at = apr_time_now() + apr_time_from_sec(300);
    finish(EV(a, 0), "d1", ET_ST_PENDING, retry_at);
    ck_assert_int_eq(claim("d1", 100)->nelts, 0);
    ck_assert_int_eq(et_outbox_next_due(ob, apr_time_now(), &due),
                     APR_SUCCESS);
    ck_assert(due == retry_at);

    /* another object's line: each in turn, a dead letter letting the
     * next one go as a delivery does */
    for (i = 0; i < 20; i++) {
        line[i] = mk("s1", ET_OBJ_KEY, "line", ET_EV_UPDATE, ET_ST_PENDING);
    }
    for (i = 0; i < 20; i++) {
        a = claim("d1", 100);
        ck_assert_int_eq(a->nelts, 1);
        ck_assert_str_eq(EV(a, 0)->txn, line[i]->txn);
        finish(EV(a, 0), "d1", i % 3 == 1 ? ET_ST_DEAD : ET_ST_DELIVERED, 0);
    }
    ck_assert_int_eq(claim("d1", 100)->nelts, 0);
}
END_TEST

/* Chained delivery's claim: the events after a claimed head, leased with
 * it, in order, at most as many as asked; they are not claimable by
 * anyone else meanwhile, and each finish passes the head on. */
START_TEST(the_events_after_a_head_are_leased_with_it)
{
    et_event_t *hot[10];
    apr_array_header_t *a, *f;
    int i;

    for (i = 0; i < 10; i++) {
        hot[i] = mk("s1", ET_OBJ_KEY, "k1", ET_EV_UPDATE, ET_ST_PENDING);
    }
    mk("s1", ET_OBJ_KEY, "k2", ET_EV_UPDATE, ET_ST_PENDING);
    a = claim("d1", 1);
    ck_assert_int_eq(a->nelts, 1);
    ck_assert_str_eq(EV(a, 0)->txn, hot[0]->txn);
    ck_assert_int_eq(et_outbox_claim_next(ob, ut_pool, EV(a, 0), "d1", 4, &f),
                     APR_SUCCESS);
    ck_assert_int_eq(f->nelts, 4);
    for (i = 0; i < 4; i++) {
        ck_assert_str_eq(EV(f, i)->txn, hot[i + 1]->txn);
        ck_assert(EV(f, i)->lease_until == EV(a, 0)->lease_until);
        ck_assert_int_eq(EV(f, i)->attempts, 1);
    }
    /* k2 only: the followers are leased, the rest wait behind them */
    a = claim("d2", 100);
    ck_assert_int_eq(a->nelts, 1);
    ck_assert_str_eq(EV(a, 0)->oid, "k2");
    finish(EV(a, 0), "d2", ET_ST_DELIVERED, 0);

    /* delivered in turn, outcomes stored out of order (a round's list):
     * the head passes on all the same */
    for (i = 3; i >= 0; i--) {
        finish(EV(f, i), "d1", ET_ST_DELIVERED, 0);
    }
    ck_assert_int_eq(claim("d2", 100)->nelts, 0);   /* hot[0] in flight */
    ck_assert_int_eq(et_outbox_list(ob, ut_pool, ET_ST_PENDING, 100, &a),
                     APR_SUCCESS);
    ck_assert_int_eq(a->nelts, 6);                   /* hot[0], hot[5..9] */
    ck_assert_int_eq(et_outbox_release(ob, "d1"), APR_SUCCESS);
    a = claim("d1", 100);
    ck_assert_int_eq(a->nelts, 1);
    ck_assert_str_eq(EV(a, 0)->txn, hot[0]->txn);
    finish(EV(a, 0), "d1", ET_ST_DEAD, 0);
    a = claim("d1", 100);
    ck_assert_int_eq(a->nelts, 1);
    ck_assert_str_eq(EV(a, 0)->txn, hot[5]->txn);
    ck_assert_int_eq(et_outbox_claim_next(ob, ut_pool, EV(a, 0), "d1", 100,
                                          &f), APR_SUCCESS);
    ck_assert_int_eq(f->nelts, 4);
    ck_assert_str_eq(EV(f, 3)->txn, hot[9]->txn);
    finish_all(a, ET_ST_DELIVERED);
    finish_all(f, ET_ST_DELIVERED);
    ck_assert_int_eq(claim("d1", 100)->nelts, 0);
}
END_TEST

/* A dead letter put back in line goes before what its object captured
 * after it, as capture order says. */
START_TEST(a_replayed_dead_letter_goes_before_its_object_s_later_events)
{
    et_event_t *d = mk("s1", ET_OBJ_MEMBER, "m1", ET_EV_CREATE,
                       ET_ST_PENDING);
    et_event_t *later;
    apr_array_header_t *a;
    int n = 0;

    a = claim("d1", 10);
    finish(EV(a, 0), "d1", ET_ST_DEAD, 0);
    later = mk("s1", ET_OBJ_MEMBER, "m1", ET_EV_UPDATE, ET_ST_PENDING);
    ck_assert_int_eq(et_outbox_replay(ob, d->txn, 0, &n), APR_SUCCESS);
    ck_assert_int_eq(n, 1);
    a = claim("d1", 10);
    ck_assert_int_eq(a->nelts, 1);
    ck_assert_str_eq(EV(a, 0)->txn, d->txn);
    finish(EV(a, 0), "d1", ET_ST_DELIVERED, 0);
    a = claim("d1", 10);
    ck_assert_int_eq(a->nelts, 1);
    ck_assert_str_eq(EV(a, 0)->txn, later->txn);
}
END_TEST

/* Whether @a a holds the event of @a txn. */
static int has_txn(const apr_array_header_t *a, const char *txn)
{
    int i;

    for (i = 0; i < a->nelts; i++) {
        if (strcmp(EV(a, i)->txn, txn) == 0) {
            return 1;
        }
    }
    return 0;
}

/* A claim for @a owner takes exactly the events of @a txns (NULL ends
 * them), in any order; each is then delivered. */
static void claim_and_deliver(const char *owner, const char *const *txns)
{
    apr_array_header_t *a = claim(owner, 10);
    int i, n;

    for (n = 0; txns[n]; n++) {
        ck_assert_msg(has_txn(a, txns[n]), "%s was not claimed", txns[n]);
    }
    ck_assert_int_eq(a->nelts, n);
    for (i = 0; i < a->nelts; i++) {
        finish(EV(a, i), owner, ET_ST_DELIVERED, 0);
    }
}

/* A replay of several objects' dead letters marks each one's head
 * again (and only those objects'): the dead letter goes first, the event
 * that was its object's head while it was dead loses the mark and passes
 * nothing on when it finishes (it was in flight), and the head's
 * successor is found past delivered events of its line. */
START_TEST(a_replay_marks_the_head_of_each_object_it_puts_back)
{
    et_event_t *e1 = mk("s1", ET_OBJ_MEMBER, "m1", ET_EV_CREATE,
                        ET_ST_PENDING);
    et_event_t *f1 = mk("s1", ET_OBJ_MEMBER, "m2", ET_EV_CREATE,
                        ET_ST_PENDING);
    et_event_t *e2, *e3, *f2, *f3, *k1, *inflight = NULL;
    apr_array_header_t *a;
    int n = 0, i;

    a = claim("d1", 10);
    ck_assert_int_eq(a->nelts, 2);
    for (i = 0; i < 2; i++) {
        finish(EV(a, i), "d1", ET_ST_DEAD, 0);
    }
    e2 = mk("s1", ET_OBJ_MEMBER, "m1", ET_EV_UPDATE, ET_ST_PENDING);
    f2 = mk("s1", ET_OBJ_MEMBER, "m2", ET_EV_UPDATE, ET_ST_PENDING);
    f3 = mk("s1", ET_OBJ_MEMBER, "m2", ET_EV_DELETE, ET_ST_PENDING);
    a = claim("d1", 1);                      /* e2: m1's head, in flight */
    ck_assert_int_eq(a->nelts, 1);
    ck_assert_str_eq(EV(a, 0)->txn, e2->txn);
    inflight = EV(a, 0);
    e3 = mk("s1", ET_OBJ_MEMBER, "m1", ET_EV_DELETE, ET_ST_PENDING);
    k1 = mk("s1", ET_OBJ_KEY, "k1", ET_EV_UPDATE, ET_ST_PENDING);

    ck_assert_int_eq(et_outbox_replay(ob, NULL, 0, &n), APR_SUCCESS);
    ck_assert_int_eq(n, 2);
    /* e2 ends while e1 is back in line before it: e3 stays behind e1 */
    finish(inflight, "d1", ET_ST_DELIVERED, 0);
    {
        const char *const first[] = { e1->txn, f1->txn, k1->txn, NULL };
        /* m1: e3, past the delivered e2; m2: f2, then f3 */
        const char *const second[] = { e3->txn, f2->txn, NULL };
        const char *const third[] = { f3->txn, NULL };
        const char *const none[] = { NULL };

        claim_and_deliver("d2", first);
        claim_and_deliver("d2", second);
        claim_and_deliver("d2", third);
        claim_and_deliver("d2", none);
    }
}
END_TEST

/* The schema version an outbox records (et_meta), or NULL. */
static const char *recorded_version(const apr_dbd_driver_t *drv,
                                    apr_dbd_t *db)
{
    apr_dbd_results_t *res = NULL;
    apr_dbd_row_t *row = NULL;
    const char *v = NULL;

    if (apr_dbd_select(drv, ut_pool, db, &res, "SELECT value FROM et_meta"
                       " WHERE name = 'schema'", 1)) {
        return NULL;
    }
    while (apr_dbd_get_row(drv, ut_pool, res, &row, -1) == 0) {
        v = apr_pstrdup(ut_pool, apr_dbd_get_entry(drv, row, 0));
    }
    return v;
}

/* An outbox as the previous release left it (no head column, no et_meta;
 * a hot object's backlog pending, its head waiting for a retry, and
 * other objects): opened with create it is migrated to version 2 once,
 * and every event is then claimed in its object's capture order. An
 * outbox of a newer version is refused with a reason. */
START_TEST(an_outbox_of_the_previous_release_is_migrated)
{
    const apr_dbd_driver_t *drv;
    apr_dbd_t *db;
    const char *err = NULL, *spec, *txns[30];
    apr_array_header_t *a;
    int nrows, i, pg = !dbdir[0], next_hot = 0, cold_seen = 0;

    db = old_outbox(&drv, &spec);
    for (i = 0; i < 30; i++) {
        /* 0..19: one hot member (its first attempted once, due now);
         * 20..29: ten members with one event each */
        ck_assert_int_eq(et_txn_new(ut_pool, &txns[i]), APR_SUCCESS);
        ck_assert_int_eq(apr_dbd_query(drv, db, &nrows, apr_psprintf(ut_pool,
                         "INSERT INTO et_event (txn, site, object, event, oid,"
                         " url, content_type, body, created, due, attempts)"
                         " VALUES ('%s', 's1', 'member', 'post-update', '%s',"
                         " 'http://r/h', 'application/json', '{}', %d, %d,"
                         " %d)", txns[i], i < 20 ? "hot"
                         : apr_itoa(ut_pool, i), i + 1, i + 1, i == 0)), 0);
    }
    apr_dbd_close(drv, db);

    spec = apr_pstrcat(ut_pool, pg ? "pgsql:" : "sqlite3:", spec, NULL);
    ck_assert_msg(et_outbox_open(&ob, ut_pool, spec, 1, &err) == APR_SUCCESS,
                  "open: %s", err ? err : "?");
    db = NULL;
    ck_assert_int_eq(apr_dbd_open_ex(drv, ut_pool, pg ? getenv("ET_TEST_PGSQL")
                                     : apr_pstrcat(ut_pool, dbdir,
                                                   "/outbox.db", NULL),
                                     &db, &err), APR_SUCCESS);
    ck_assert_str_eq(recorded_version(drv, db), "2");

    /* claimed in order: the hot member's events one at a time */
    for (i = 0; i < 40 && next_hot < 20; i++) {
        int j;

        a = claim("d1", 100);
        ck_assert_int_ge(a->nelts, 1);
        for (j = 0; j < a->nelts; j++) {
            if (!strcmp(EV(a, j)->oid, "hot")) {
                ck_assert_str_eq(EV(a, j)->txn, txns[next_hot]);
                next_hot++;
            }
            else {
                cold_seen++;
            }
        }
        finish_all(a, ET_ST_DELIVERED);
    }
    ck_assert_int_eq(next_hot, 20);
    ck_assert_int_eq(cold_seen, 10);

    /* opened again: nothing to migrate, the version kept */
    et_outbox_close(ob);
    ck_assert_msg(et_outbox_open(&ob, ut_pool, spec, 1, &err) == APR_SUCCESS,
                  "open again: %s", err ? err : "?");
    ck_assert_str_eq(recorded_version(drv, db), "2");

    /* a newer release's outbox: refused, said why */
    et_outbox_close(ob);
    ob = NULL;
    ck_assert_int_eq(apr_dbd_query(drv, db, &nrows, "UPDATE et_meta SET"
                                   " value = '3' WHERE name = 'schema'"), 0);
    ck_assert_int_ne(et_outbox_open(&ob, ut_pool, spec, 1, &err),
                     APR_SUCCESS);
    ck_assert_ptr_nonnull(strstr(err, "version 3, newer than"));
    ck_assert_int_eq(apr_dbd_query(drv, db, &nrows, "UPDATE et_meta SET"
                                   " value = '2' WHERE name = 'schema'"), 0);
    apr_dbd_close(drv, db);
    ck_assert_msg(et_outbox_open(&ob, ut_pool, spec, 1, &err) == APR_SUCCESS,
                  "open: %s", err ? err : "?");
}
END_TEST

/* A round's outcomes in one call (one statement on PostgreSQL): a head
 * delivered and its follower back for a retry (the follower is the head
 * now), a dead head (its next one goes), an outcome whose lease is gone
 * (EBUSY, nothing written). */
START_TEST(a_round_s_outcomes_are_recorded_together)
{
    et_event_t *h = mk("s1", ET_OBJ_MEMBER, "m1", ET_EV_UPDATE, ET_ST_PENDING);
    et_event_t *f1 = mk("s1", ET_OBJ_MEMBER, "m1", ET_EV_UPDATE,
                        ET_ST_PENDING);
    et_event_t *f2 = mk("s1", ET_OBJ_MEMBER, "m1", ET_EV_DELETE,
                        ET_ST_PENDING);
    et_event_t *d = mk("s1", ET_OBJ_KEY, "k1", ET_EV_UPDATE, ET_ST_PENDING);
    et_event_t *dn = mk("s1", ET_OBJ_KEY, "k1", ET_EV_DELETE, ET_ST_PENDING);
    et_event_t *x = mk("s1", ET_OBJ_KEY, "k2", ET_EV_UPDATE, ET_ST_PENDING);
    apr_array_header_t *a, *fol;
    et_finish_t fs[4];
    et_event_t stale;
    int i;

    a = claim("d1", 10);
    ck_assert_int_eq(a->nelts, 3);                   /* h, d, x */
    ck_assert_int_eq(et_outbox_claim_next(ob, ut_pool, EV(a, 0), "d1", 1,
                                          &fol), APR_SUCCESS);
    ck_assert_int_eq(fol->nelts, 1);
    ck_assert_str_eq(EV(fol, 0)->txn, f1->txn);
    memset(fs, 0, sizeof(fs));
    fs[0].ev = EV(a, 0);
    fs[0].out.state = ET_ST_DELIVERED;
    fs[0].out.status = 200;
    fs[1].ev = EV(fol, 0);
    fs[1].out.state = ET_ST_PENDING;
    fs[1].out.status = 503;
    fs[1].out.error = "server error: HTTP 503, answer: caf\xc3\xa9";
    fs[1].out.due = apr_time_now() - 1;
    fs[2].ev = EV(a, 1);
    fs[2].out.state = ET_ST_DEAD;
    fs[2].out.status = 410;
    fs[2].out.error = "gone";
    stale = *EV(a, 2);
    stale.lease_until -= 1;                          /* not its lease */
    fs[3].ev = &stale;
    fs[3].out.state = ET_ST_DELIVERED;
    ck_assert_int_eq(et_outbox_finish_batch(ob, "d1", fs, 4), APR_SUCCESS);
    ck_assert_int_eq(fs[0].rv, APR_SUCCESS);
    ck_assert_int_eq(fs[1].rv, APR_SUCCESS);
    ck_assert_int_eq(fs[2].rv, APR_SUCCESS);
    ck_assert_int_eq(fs[3].rv, APR_EBUSY);
    ck_assert_int_eq(et_outbox_show(ob, ut_pool, f1->txn, &f1), APR_SUCCESS);
    ck_assert_int_eq(f1->state, ET_ST_PENDING);
    ck_assert_int_eq(f1->last_status, 503);
    ck_assert_str_eq(f1->error, "server error: HTTP 503, answer: caf\xc3\xa9");

    /* next: f1 (its retry due: it is m1's head now) and dn (after the
     * dead d); f2 waits behind f1; x is still leased */
    a = claim("d2", 10);
    ck_assert_int_eq(a->nelts, 2);
    ck_assert_str_eq(EV(a, 0)->txn, f1->txn);
    ck_assert_str_eq(EV(a, 1)->txn, dn->txn);
    for (i = 0; i < 2; i++) {
        finish(EV(a, i), "d2", ET_ST_DELIVERED, 0);
    }
    a = claim("d2", 10);
    ck_assert_int_eq(a->nelts, 1);
    ck_assert_str_eq(EV(a, 0)->txn, f2->txn);
    (void)h;
    (void)d;
    (void)x;
}
END_TEST

/* SQLite's virtual machine steps, counted by its progress handler: what
 * a statement reads and computes, without a clock. */
static int count_step(void *data)
{
    ++*(long *)data;
    return 0;
}

static long steps;

static void watch(int on)
{
    steps = 0;
    sqlite3_progress_handler(et_outbox_native(ob), on ? 1 : 0,
                             on ? count_step : NULL, on ? &steps : NULL);
}

/* @a n more pending events of member @a oid (site s1), in one commit. */
static void backlog(const char *oid, int n)
{
    apr_dbd_transaction_t *trans = NULL;
    apr_pool_t *p;
    int i;

    apr_pool_create(&p, ut_pool);
    ck_assert_int_eq(et_outbox_begin(ob, p, &trans), APR_SUCCESS);
    for (i = 0; i < n; i++) {
        et_event_t *ev = build("s1", ET_OBJ_MEMBER, oid ? oid
                               : apr_psprintf(ut_pool, "d%d", i),
                               ET_EV_UPDATE, ET_ST_PENDING);

        ck_assert_int_eq(et_outbox_insert(ob, ev), APR_SUCCESS);
    }
    ck_assert_int_eq(et_outbox_end(ob, p, trans), APR_SUCCESS);
    apr_pool_destroy(p);
}

/* The work of each hot-path statement (store, claim, the chain's claim,
 * finish with its promotion, next due) with one object's line of
 * @a behind events, @a done delivered events of that object before them
 * (retained history) and @a others distinct pending objects, in VM
 * steps: out[0..4]. The hot object's head is claimed and in a retry
 * first. */
static void hot_path_steps(int behind, int done, int others, long out[5])
{
    apr_array_header_t *a, *f;
    apr_time_t due;
    et_event_t *ev;

    if (done) {
        /* as a drain leaves them: delivered, in the object's line */
        backlog("hot", done);
        ck_assert_int_eq(sqlite3_exec(et_outbox_native(ob),
                                      "UPDATE et_event SET state = 1,"
                                      " done_at = due WHERE oid = 'hot'",
                                      NULL, NULL, NULL), SQLITE_OK);
    }
    backlog("hot", 1);
    a = claim("d1", 1);
    ck_assert_int_eq(a->nelts, 1);
    finish(EV(a, 0), "d1", ET_ST_PENDING, apr_time_now() - 1);
    backlog("hot", behind);
    backlog(NULL, others);

    ev = build("s1", ET_OBJ_MEMBER, "hot", ET_EV_DELETE, ET_ST_PENDING);
    watch(1);
    ck_assert_int_eq(et_outbox_insert(ob, ev), APR_SUCCESS);
    out[0] = steps;
    watch(1);
    ck_assert_int_eq(et_outbox_claim(ob, ut_pool, "s1", "d1",
                                     apr_time_from_sec(30), 8, &a),
                     APR_SUCCESS);
    out[1] = steps;
    ck_assert_int_eq(a->nelts, 8);
    ck_assert_str_eq(EV(a, 0)->oid, "hot");          /* the soonest due */
    ck_assert(EV(a, 0)->followed);
    watch(1);
    ck_assert_int_eq(et_outbox_claim_next(ob, ut_pool, EV(a, 0), "d1", 4,
                                          &f), APR_SUCCESS);
    out[2] = steps;
    ck_assert_int_eq(f->nelts, 4);
    watch(1);
    finish(EV(a, 0), "d1", ET_ST_DELIVERED, 0);
    out[3] = steps;
    watch(1);
    ck_assert_int_eq(et_outbox_next_due(ob, apr_time_now(), &due),
                     APR_SUCCESS);
    out[4] = steps;
    watch(0);
}

/* Issue 14: the hot paths cost the same with 10 or 5,000 events behind
 * one object's head, none or 5,000 of its events delivered before it,
 * and with 20 or 5,000 other objects pending (SQLite:
 * counted in steps of its virtual machine; a statement that walked the
 * line or the backlog would take thousands more). */
START_TEST(hot_paths_cost_the_same_whatever_the_backlog)
{
    static const char *const what[] = { "store", "claim", "chain's claim",
                                        "finish", "next due" };
    long small[5], big[5];
    int i;

    hot_path_steps(10, 0, 20, small);
    ob_teardown();
    ob_setup();
    hot_path_steps(5000, 5000, 5000, big);
    for (i = 0; i < 5; i++) {
        ck_assert_msg(big[i] <= small[i] * 3 / 2 + 50,
                      "%s: %ld steps with a backlog of 10,000 and 5,000 "
                      "delivered, %ld with 30 and none",
                      what[i], big[i], small[i]);
    }
}
END_TEST

static void add_outbox_tests(TCase *tc)
{
    tcase_add_test(tc, a_round_s_outcomes_are_recorded_together);
    tcase_add_test(tc, only_an_object_s_head_is_claimed);
    tcase_add_test(tc, the_events_after_a_head_are_leased_with_it);
    tcase_add_test(tc, a_replayed_dead_letter_goes_before_its_object_s_later_events);
    tcase_add_test(tc, a_replay_marks_the_head_of_each_object_it_puts_back);
    tcase_add_test(tc, an_outbox_of_the_previous_release_is_migrated);
    tcase_add_test(tc, trace_context_and_headers_are_kept_with_the_event);
    tcase_add_test(tc, an_outbox_without_trace_columns_gets_them);
    tcase_add_test(tc, claim_returns_the_stored_event);
    tcase_add_test(tc, failed_events_are_kept_but_never_claimed);
    tcase_add_test(tc, one_object_in_capture_order_others_in_parallel);
    tcase_add_test(tc, a_retry_waits_until_due);
    tcase_add_test(tc, the_next_due_skips_events_that_wait_behind_another);
    tcase_add_test(tc, only_the_lease_holder_records_the_outcome);
    tcase_add_test(tc, release_returns_leases_without_using_an_attempt);
    tcase_add_test(tc, counts_follow_the_states);
    tcase_add_test(tc, a_txn_is_stored_once);
    tcase_add_test(tc, a_fresh_event_is_stored_leased_when_first_of_its_object);
    tcase_add_test(tc, bad_specs_are_refused_with_a_reason);
    tcase_add_test(tc, claims_are_per_site_and_health_rows_are_kept);
    tcase_add_test(tc, unclaim_gives_back_without_an_attempt);
    tcase_add_test(tc, an_expired_lease_is_claimed_again);
    tcase_add_test(tc, an_outcome_counts_for_its_own_lease_only);
    tcase_add_test(tc, replay_puts_dead_letters_back_with_their_txn);
    tcase_add_test(tc, site_counts_and_recent_errors);
    tcase_add_test(tc, prune_deletes_only_old_finished_events);
    tcase_add_test(tc, latencies_are_per_site_and_retries_lead_recent_failures);
}

/* End the PostgreSQL sessions named @a app (as a server restart or an
 * admin's pg_terminate_backend would); how many there were. */
static int end_sessions(const char *app)
{
    const apr_dbd_driver_t *drv;
    apr_dbd_t *admin = NULL;
    apr_dbd_results_t *res = NULL;
    apr_dbd_row_t *row = NULL;
    const char *err = NULL;
    int ended = 0;

    ck_assert_int_eq(apr_dbd_get_driver(ut_pool, "pgsql", &drv), APR_SUCCESS);
    ck_assert_int_eq(apr_dbd_open_ex(drv, ut_pool, getenv("ET_TEST_PGSQL"),
                                     &admin, &err), APR_SUCCESS);
    ck_assert_int_eq(apr_dbd_select(drv, ut_pool, admin, &res,
                                    apr_psprintf(ut_pool,
                                    "SELECT pg_terminate_backend(pid)"
                                    " FROM pg_stat_activity WHERE"
                                    " application_name = '%s'", app), 0),
                     0);
    while (apr_dbd_get_row(drv, ut_pool, res, &row, -1) == 0) {
        ended++;
    }
    apr_dbd_close(drv, admin);
    return ended;
}

static const char *pg_spec_named(const char *app)
{
    return apr_pstrcat(ut_pool, "pgsql:", getenv("ET_TEST_PGSQL"),
                       " application_name=", app, NULL);
}

/* PostgreSQL ended the outbox's session: the next BEGIN fails with a
 * result, on which APR-util's pgsql driver wrote through a NULL
 * transaction (a crash of the child or the dispatcher); it must be an
 * error the caller can log, and the connection says it no longer answers. */
START_TEST(a_session_the_server_ended_is_an_error_not_a_crash)
{
    apr_dbd_transaction_t *trans = NULL;
    et_outbox_t *ob2 = NULL;
    const char *err = NULL;
    et_event_t *evs[2];
    apr_status_t each[2];

    ck_assert_msg(et_outbox_open(&ob2, ut_pool, pg_spec_named("et_unit_ended"),
                                 1, &err) == APR_SUCCESS,
                  "open: %s", err ? err : "?");
    ck_assert_int_eq(et_outbox_ping(ob2), APR_SUCCESS);
    ck_assert_int_eq(end_sessions("et_unit_ended"), 1);

    ck_assert_int_ne(et_outbox_begin(ob2, ut_pool, &trans), APR_SUCCESS);
    ck_assert_ptr_null(trans);
    evs[0] = build("s1", ET_OBJ_MEMBER, "e1", ET_EV_CREATE, ET_ST_PENDING);
    evs[1] = build("s1", ET_OBJ_MEMBER, "e2", ET_EV_CREATE, ET_ST_PENDING);
    ck_assert_int_ne(et_outbox_insert_batch(ob2, evs, 2, each), APR_SUCCESS);
    ck_assert_int_ne(et_outbox_ping(ob2), APR_SUCCESS);
    et_outbox_close(ob2);
}
END_TEST

/* The writer of the intake and of the children's group commit: a batch
 * that meets a session the server ended is stored on a new connection,
 * not lost (the console has answered the admin already). */
START_TEST(a_writer_stores_its_batch_on_a_new_session)
{
    et_writer_t *w = et_writer_create(ut_pool, pg_spec_named("et_unit_writer"),
                                      NULL);
    et_event_t *evs[2];
    apr_status_t each[2] = { APR_EGENERAL, APR_EGENERAL };
    et_outbox_counts_t c;
    char err[256];
    int n;

    for (n = 1; n <= 2; n++) {
        evs[0] = build("s1", ET_OBJ_MEMBER, apr_psprintf(ut_pool, "w%d", n),
                       ET_EV_CREATE, ET_ST_PENDING);
        evs[1] = build("s1", ET_OBJ_KEY, apr_psprintf(ut_pool, "k%d", n),
                       ET_EV_CREATE, ET_ST_PENDING);
        ck_assert_int_eq(et_writer_enter(w, err, sizeof(err)), APR_SUCCESS);
        ck_assert_msg(et_writer_store(w, evs, 2, each, err, sizeof(err))
                      == APR_SUCCESS, "batch %d: %s", n, err);
        ck_assert_int_eq(each[0], APR_SUCCESS);
        ck_assert_int_eq(each[1], APR_SUCCESS);
        if (n == 1) {
            ck_assert_int_eq(end_sessions("et_unit_writer"), 1);
        }
    }
    et_writer_close(w);
    counts_s1(&c);
    ck_assert_int_eq(c.pending, 4);
}
END_TEST

/* Two writers (two machines on one PostgreSQL outbox) store events of one
 * object at once: the later one waits for the earlier one's commit, so
 * its ordering check sees it pending and it is not leased ahead of it
 * (under READ COMMITTED an uncommitted event is invisible). */
static et_outbox_t *ob_b;
static et_event_t *ev_b;
static volatile apr_uint32_t b_done;
static apr_status_t b_rv;

static void *APR_THREAD_FUNC store_b(apr_thread_t *t, void *data)
{
    b_rv = et_outbox_insert(ob_b, ev_b);
    apr_atomic_set32(&b_done, 1);
    return NULL;
}

START_TEST(one_object_s_events_are_stored_one_after_the_other)
{
    apr_dbd_transaction_t *trans = NULL;
    et_event_t *first = build("s1", ET_OBJ_MEMBER, "m-race", ET_EV_UPDATE,
                              ET_ST_PENDING);
    apr_thread_t *t;
    apr_status_t trv;
    const char *err = NULL;
    apr_time_t until;

    ck_assert_msg(et_outbox_open(&ob_b, ut_pool, pg_spec_named("et_unit_b"),
                                 0, &err) == APR_SUCCESS,
                  "open: %s", err ? err : "?");
    ev_b = build("s1", ET_OBJ_MEMBER, "m-race", ET_EV_DELETE, ET_ST_PENDING);
    ev_b->lease_owner = "d2";
    ev_b->lease_until = apr_time_now() + apr_time_from_sec(30);

    /* writer A: the first event stored, not committed yet */
    ck_assert_int_eq(et_outbox_begin(ob, ut_pool, &trans), APR_SUCCESS);
    ck_assert_int_eq(et_outbox_insert(ob, first), APR_SUCCESS);
    /* writer B: the second, meanwhile */
    apr_atomic_set32(&b_done, 0);
    ck_assert_int_eq(apr_thread_create(&t, NULL, store_b, NULL, ut_pool),
                     APR_SUCCESS);
    apr_sleep(apr_time_from_msec(300));
    ck_assert_msg(!apr_atomic_read32(&b_done),
                  "the second event was stored before the first committed");
    ck_assert_int_eq(et_outbox_end(ob, ut_pool, trans), APR_SUCCESS);
    until = apr_time_now() + apr_time_from_sec(10);
    while (!apr_atomic_read32(&b_done) && apr_time_now() < until) {
        apr_sleep(apr_time_from_msec(10));
    }
    apr_thread_join(&trv, t);
    ck_assert_int_eq(b_rv, APR_SUCCESS);
    ck_assert_msg(ev_b->lease_owner == NULL,
                  "the second event was leased ahead of the first");
    et_outbox_close(ob_b);
}
END_TEST

/* A dispatcher on a session the server ended: it says so (ET01041) and
 * stops with an error, so that httpd starts one again on new connections
 * (every round would fail on the old one for good). */
static char disp_log[8192];
static apr_thread_mutex_t *disp_log_mu;
static volatile int disp_stop;
static apr_status_t disp_rv = APR_EINIT;
static volatile apr_uint32_t disp_done;

static void disp_logger(void *baton, int level, const char *msg)
{
    apr_thread_mutex_lock(disp_log_mu);
    apr_cpystrn(disp_log + strlen(disp_log), msg,
                sizeof(disp_log) - strlen(disp_log));
    apr_thread_mutex_unlock(disp_log_mu);
}

static int disp_logged(const char *s)
{
    int found;

    apr_thread_mutex_lock(disp_log_mu);
    found = strstr(disp_log, s) != NULL;
    apr_thread_mutex_unlock(disp_log_mu);
    return found;
}

static const et_site_t *disp_site(void *baton, const char *name)
{
    static et_site_t site;

    site.name = name;
    site.timeout = apr_time_from_sec(1);
    site.connect_timeout = apr_time_from_sec(1);
    return &site;
}

static void *APR_THREAD_FUNC disp_main(apr_thread_t *t, void *data)
{
    apr_pool_t *p;

    apr_pool_create(&p, NULL);
    disp_rv = et_dispatch_run(p, data);
    apr_pool_destroy(p);
    apr_atomic_set32(&disp_done, 1);
    return NULL;
}

/* A dispatcher of one worker on @a store for @a site (NULL: none) on a
 * thread of its own (disp_main), logging into disp_log; @a space: its
 * outbox's room (NULL: none). */
static apr_thread_t *disp_start(et_dispatch_conf_t *conf, const char *store,
                                const char *site, const et_space_t *space)
{
    apr_thread_t *t;

    ck_assert_int_eq(et_http_curl_global_init(), APR_SUCCESS);
    ck_assert_int_eq(apr_thread_mutex_create(&disp_log_mu,
                                             APR_THREAD_MUTEX_DEFAULT,
                                             ut_pool), APR_SUCCESS);
    disp_log[0] = '\0';
    disp_stop = 0;
    apr_atomic_set32(&disp_done, 0);
    memset(conf, 0, sizeof(*conf));
    conf->store = store;
    conf->workers = 1;
    conf->lease = apr_time_from_sec(10);
    conf->poll = apr_time_from_msec(50);
    conf->lookup = disp_site;
    conf->log = disp_logger;
    conf->stop = &disp_stop;
    conf->sites = apr_array_make(ut_pool, 1, sizeof(const char *));
    if (site) {
        APR_ARRAY_PUSH(conf->sites, const char *) = site;
    }
    conf->space = space;
    ck_assert_int_eq(apr_thread_create(&t, NULL, disp_main, conf, ut_pool),
                     APR_SUCCESS);
    return t;
}

/* Non-zero once the dispatcher logged @a code, within 10 seconds. */
static int disp_waited_for(const char *code)
{
    apr_time_t until = apr_time_now() + apr_time_from_sec(10);

    while (!disp_logged(code) && apr_time_now() < until) {
        apr_sleep(apr_time_from_msec(20));
    }
    return disp_logged(code);
}

START_TEST(a_dispatcher_whose_session_ended_stops_to_start_again)
{
    et_dispatch_conf_t conf;
    apr_thread_t *t;
    apr_status_t trv;
    apr_time_t until;

    t = disp_start(&conf, pg_spec_named("et_unit_disp"), NULL, NULL);
    /* running: its session is there */
    ck_assert_msg(disp_waited_for("ET01005"), "not running: %s", disp_log);
    ck_assert_int_ge(end_sessions("et_unit_disp"), 1);

    until = apr_time_now() + apr_time_from_sec(10);
    while (!apr_atomic_read32(&disp_done) && apr_time_now() < until) {
        apr_sleep(apr_time_from_msec(20));
    }
    if (!apr_atomic_read32(&disp_done)) {
        disp_stop = 1;                /* let the thread end; then fail */
    }
    apr_thread_join(&trv, t);
    ck_assert_msg(disp_rv == APR_EGENERAL && disp_logged("ET01041"),
                  "the dispatcher did not stop for a new session: %s",
                  disp_log);
}
END_TEST

/* Run @a sql on the outbox file with the outbox closed, then open it
 * again: apr_dbd's sqlite3 driver prepares with the legacy interface, so
 * a schema change under open statements would fail them all. */
static void sql_aside(const char *sql)
{
    const char *path = apr_pstrcat(ut_pool, dbdir, "/outbox.db", NULL);
    const char *err = NULL;
    sqlite3 *db;

    et_outbox_close(ob);
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    ck_assert_msg(et_outbox_open(&ob, ut_pool,
                                 apr_pstrcat(ut_pool, "sqlite3:", path, NULL),
                                 0, &err) == APR_SUCCESS,
                  "open: %s", err ? err : "?");
}

/* A finish outside a round's transaction (the outcomes written one by one
 * after a round failed) and its promotion commit together: here the
 * promotion fails (a trigger stands in for a full disk) and the finish
 * goes with it, so the event is still its object's leased head, and the
 * next event is not left pending without a head (never claimed). */
START_TEST(a_finish_whose_promotion_fails_is_not_recorded)
{
    et_event_t *e1 = mk("s1", ET_OBJ_MEMBER, "m1", ET_EV_UPDATE,
                        ET_ST_PENDING);
    et_event_t *e2 = mk("s1", ET_OBJ_MEMBER, "m1", ET_EV_UPDATE,
                        ET_ST_PENDING);
    apr_array_header_t *a = claim("d1", 10);
    et_outcome_t out;
    et_event_t *shown = NULL;

    ck_assert_int_eq(a->nelts, 1);
    ck_assert_str_eq(EV(a, 0)->txn, e1->txn);
    sql_aside("CREATE TRIGGER no_room BEFORE UPDATE OF head ON et_event"
              " WHEN NEW.head = 1 BEGIN SELECT RAISE(ABORT, 'no room'); END");
    memset(&out, 0, sizeof(out));
    out.state = ET_ST_DELIVERED;
    out.status = 200;
    ck_assert_int_ne(et_outbox_finish(ob, EV(a, 0), "d1", &out),
                     APR_SUCCESS);
    ck_assert_int_eq(sqlite3_get_autocommit(et_outbox_native(ob)), 1);
    ck_assert_msg(et_outbox_show(ob, ut_pool, e1->txn, &shown)
                  == APR_SUCCESS, "show: %s", et_outbox_error(ob));
    ck_assert_int_eq(shown->state, ET_ST_PENDING);

    /* room again: the same outcome is recorded, and passes the head on */
    sql_aside("DROP TRIGGER no_room");
    finish(EV(a, 0), "d1", ET_ST_DELIVERED, 0);
    a = claim("d1", 10);
    ck_assert_int_eq(a->nelts, 1);
    ck_assert_str_eq(EV(a, 0)->txn, e2->txn);
}
END_TEST

/* The attempts of @a txn so far, as the outbox holds them. */
static int attempts_of(const char *txn)
{
    et_event_t *ev = NULL;

    ck_assert_int_eq(et_outbox_show(ob, ut_pool, txn, &ev), APR_SUCCESS);
    return ev->attempts;
}

/* The reserve kept for admitted events given up (here it cannot be held:
 * its directory is missing): the dispatcher claims nothing and says why
 * (ET01059). Once it can hold the reserve (the directory is made) it does
 * so itself - no request comes to make the guard's check - and claims
 * again (ET01060). */
START_TEST(a_dispatcher_writes_nothing_while_the_reserve_is_given_up)
{
    const char *spec = apr_pstrcat(ut_pool, "sqlite3:", dbdir, "/outbox.db",
                                   NULL);
    const char *rdir = apr_pstrcat(ut_pool, dbdir, "/r", NULL);
    et_dispatch_conf_t conf;
    et_space_t *sp;
    et_event_t *ev;
    apr_thread_t *t;
    apr_status_t trv;
    apr_time_t until;

    ev = build("s1", ET_OBJ_MEMBER, "m1", ET_EV_UPDATE, ET_ST_PENDING);
    ev->url = "http://127.0.0.1:1/h/v1/member/m1";   /* refused at once */
    ck_assert_int_eq(et_outbox_insert(ob, ev), APR_SUCCESS);

    sp = et_space_of(ut_pool, spec, 64 * 1024);
    ck_assert_ptr_nonnull(sp);
    sp->reserve_path = apr_pstrcat(ut_pool, rdir, "/outbox.db.reserve", NULL);
    t = disp_start(&conf, spec, "s1", sp);
    ck_assert_msg(disp_waited_for("ET01059"), "not held back: %s", disp_log);
    /* ten poll intervals: a dispatcher that may write claims in one */
    apr_sleep(apr_time_from_msec(500));
    ck_assert_int_eq(attempts_of(ev->txn), 0);

    ck_assert_int_eq(apr_dir_make(rdir, APR_OS_DEFAULT, ut_pool),
                     APR_SUCCESS);
    until = apr_time_now() + apr_time_from_sec(10);
    while ((!disp_logged("ET01060") || attempts_of(ev->txn) < 1)
           && apr_time_now() < until) {
        apr_sleep(apr_time_from_msec(20));
    }
    ck_assert_msg(disp_logged("ET01060"), "not resumed: %s", disp_log);
    ck_assert_int_ge(attempts_of(ev->txn), 1);
    ck_assert(et_reserve_held(sp->reserve_path, sp->reserve));

    disp_stop = 1;
    apr_thread_join(&trv, t);
    ck_assert_int_eq(disp_rv, APR_SUCCESS);
    apr_file_remove(sp->reserve_path, ut_pool);
    ck_assert_int_eq(apr_dir_remove(rdir, ut_pool), APR_SUCCESS);
}
END_TEST

Suite *outbox_suite(void)
{
    Suite *s = suite_create("outbox");
    TCase *tc = tcase_create("sqlite3");

    tcase_add_checked_fixture(tc, ob_setup, ob_teardown);
    add_outbox_tests(tc);
    tcase_add_test(tc, group_commit_stores_every_thread_s_events);
    tcase_add_test(tc, an_older_outbox_gets_the_current_indexes);
    tcase_add_test(tc, a_checkpoint_goes_on_while_another_thread_is_in_a_statement);
    tcase_add_test(tc, a_finish_whose_promotion_fails_is_not_recorded);
    suite_add_tcase(s, tc);
    {
        /* a dispatcher's checks a second apart: seconds */
        TCase *th = tcase_create("hold-back");

        tcase_add_checked_fixture(th, ob_setup, ob_teardown);
        tcase_set_timeout(th, 60);
        tcase_add_test(th,
                       a_dispatcher_writes_nothing_while_the_reserve_is_given_up);
        suite_add_tcase(s, th);
    }
    {
        /* 10,000 events stored: minutes under valgrind */
        TCase *tk = tcase_create("cost");

        tcase_add_checked_fixture(tk, ob_setup, ob_teardown);
        tcase_set_timeout(tk, 600);
        tcase_add_test(tk, hot_paths_cost_the_same_whatever_the_backlog);
        suite_add_tcase(s, tk);
    }
    if (ut_have_pgsql()) {
        TCase *tp = tcase_create("pgsql");

        tcase_add_checked_fixture(tp, ob_setup_pg, ob_teardown);
        tcase_set_timeout(tp, 60);    /* the dispatcher's deadlines, slowed
                                       * down under valgrind */
        add_outbox_tests(tp);
        tcase_add_test(tp, a_session_the_server_ended_is_an_error_not_a_crash);
        tcase_add_test(tp, a_writer_stores_its_batch_on_a_new_session);
        tcase_add_test(tp, one_object_s_events_are_stored_one_after_the_other);
        tcase_add_test(tp, a_dispatcher_whose_session_ended_stops_to_start_again);
        suite_add_tcase(s, tp);
    }

    return s;
}
