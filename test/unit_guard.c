/* Licensed under the Apache License, Version 2.0. */
/*
 * unit_guard.c: fail closed (et_guard.c): the reserve, the room decision,
 * the shared state's transitions and counts.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <apr_strings.h>
#include <apr_file_io.h>

#include <sqlite3.h>
#include <apr_dbd.h>

#include "et_guard.h"
#include "et_outbox.h"
#include "unit_tests.h"

static const char *tmp_path(const char *name)
{
    const char *dir = NULL;

    ck_assert_int_eq(apr_temp_dir_get(&dir, ut_pool), APR_SUCCESS);
    return apr_psprintf(ut_pool, "%s/et_guard_%ld_%s", dir, (long)getpid(),
                        name);
}

START_TEST(reserve_path_for_sqlite_only)
{
    ck_assert_str_eq(et_reserve_path(ut_pool, "sqlite3:/var/lib/x/e.db"),
                     "/var/lib/x/e.db.reserve");
    ck_assert_ptr_null(et_reserve_path(ut_pool, "pgsql:host=x password=y"));
    ck_assert_ptr_null(et_reserve_path(ut_pool, "sqlite3:"));
}
END_TEST

START_TEST(reserve_is_held_released_and_held_again)
{
    const char *path = tmp_path("reserve");
    struct stat st;

    unlink(path);
    ck_assert(!et_reserve_held(path, 256 * 1024));
    ck_assert_int_eq(et_reserve_release(path), APR_ENOENT);
    ck_assert_int_eq(et_reserve_hold(path, 256 * 1024), APR_SUCCESS);
    ck_assert(et_reserve_held(path, 256 * 1024));
    /* allocated, not sparse */
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_ge((apr_off_t)st.st_blocks * 512, 256 * 1024);
    ck_assert_int_eq((int)(st.st_mode & 0777), 0640);
    /* holding twice takes no more */
    ck_assert_int_eq(et_reserve_hold(path, 256 * 1024), APR_SUCCESS);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_lt((apr_off_t)st.st_blocks * 512, 512 * 1024);
    ck_assert_int_eq(et_reserve_release(path), APR_SUCCESS);
    ck_assert(!et_reserve_held(path, 256 * 1024));
    ck_assert_int_eq(et_reserve_release(path), APR_ENOENT);
    ck_assert_int_eq(et_reserve_hold(path, 256 * 1024), APR_SUCCESS);
    ck_assert(et_reserve_held(path, 256 * 1024));
    unlink(path);
}
END_TEST

START_TEST(reserve_that_cannot_be_held_takes_nothing)
{
    /* more than any test machine's /tmp holds */
    const char *path = tmp_path("huge");
    apr_off_t avail;
    struct stat st;

    unlink(path);
    ck_assert_int_eq(et_fs_free(path, &avail), APR_ENOENT);
    ck_assert_int_ne(et_reserve_hold(path, (apr_off_t)1 << 50), APR_SUCCESS);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq((int)st.st_blocks, 0);
    ck_assert_int_eq(et_fs_free(path, &avail), APR_SUCCESS);
    ck_assert_int_gt(avail, 0);
    ck_assert(!et_reserve_held(path, 1));
    unlink(path);
}
END_TEST

START_TEST(room_decision_with_hysteresis)
{
    int hold;
    const apr_off_t R = 100;

    /* held and room besides it: writable */
    ck_assert_int_eq(et_space_decide(100, 1, R, 0, &hold), ET_OB_WRITABLE);
    ck_assert(!hold);
    /* held, room below the reserve's size: refuse before the reserve is
     * needed */
    ck_assert_int_eq(et_space_decide(99, 1, R, 0, &hold), ET_OB_FULL);
    ck_assert(!hold);
    /* the write-ahead log's size is kept aside for the next checkpoint */
    ck_assert_int_eq(et_space_decide(149, 1, R, 50, &hold), ET_OB_FULL);
    ck_assert_int_eq(et_space_decide(150, 1, R, 50, &hold), ET_OB_WRITABLE);
    /* given up: refuse, and hold it again only with room for it and as
     * much again */
    ck_assert_int_eq(et_space_decide(150, 0, R, 0, &hold), ET_OB_FULL);
    ck_assert(!hold);
    ck_assert_int_eq(et_space_decide(200, 0, R, 0, &hold), ET_OB_FULL);
    ck_assert(hold);
    ck_assert_int_eq(et_space_decide(249, 0, R, 50, &hold), ET_OB_FULL);
    ck_assert(!hold);
    ck_assert_int_eq(et_space_decide(250, 0, R, 50, &hold), ET_OB_FULL);
    ck_assert(hold);
}
END_TEST

START_TEST(state_refusing_since_and_recovered)
{
    apr_uint64_t mem[128];
    et_guard_t *g;
    et_guard_view_t v;
    apr_time_t t0 = apr_time_from_sec(1000000);
    apr_interval_time_t ttl = apr_time_from_msec(100);

    ck_assert_uint_le(et_guard_size(3), sizeof(mem));
    g = et_guard_init(mem, 3, t0);
    ck_assert_int_eq(et_guard_state(g), ET_OB_UNKNOWN);
    /* due at first; one checker at a time */
    ck_assert(et_guard_due(g, t0, ttl));
    ck_assert(!et_guard_due(g, t0, ttl));
    ck_assert_int_eq(et_guard_record(g, t0, ET_OB_WRITABLE, 4096, 1024),
                     ET_GUARD_SAME);
    /* fresh: nobody checks */
    ck_assert(!et_guard_due(g, t0 + apr_time_from_msec(99), ttl));
    ck_assert(et_guard_due(g, t0 + apr_time_from_msec(100), ttl));
    ck_assert_int_eq(et_guard_record(g, t0 + apr_time_from_sec(1),
                                     ET_OB_FULL, 0, 0), ET_GUARD_REFUSING);
    et_guard_view(g, &v);
    ck_assert_int_eq(v.state, ET_OB_FULL);
    ck_assert_int_eq(v.refusing_since, t0 + apr_time_from_sec(1));
    ck_assert_int_eq(v.avail, 0);
    /* still refusing: the time it began stays */
    ck_assert(et_guard_due(g, t0 + apr_time_from_sec(2), ttl));
    ck_assert_int_eq(et_guard_record(g, t0 + apr_time_from_sec(2),
                                     ET_OB_DOWN, -1, -1), ET_GUARD_SAME);
    et_guard_view(g, &v);
    ck_assert_int_eq(v.refusing_since, t0 + apr_time_from_sec(1));
    ck_assert_int_eq(v.avail, -1);
    ck_assert(et_guard_due(g, t0 + apr_time_from_sec(3), ttl));
    ck_assert_int_eq(et_guard_record(g, t0 + apr_time_from_sec(3),
                                     ET_OB_WRITABLE, 8192, 1024),
                     ET_GUARD_RECOVERED);
    et_guard_view(g, &v);
    ck_assert_int_eq(v.refusing_since, 0);
    ck_assert_int_eq(v.avail, 8192);
    ck_assert_int_eq(v.reserve, 1024);
    /* a failed store: refused, and checked again at once */
    ck_assert(!et_guard_due(g, t0 + apr_time_from_sec(3), ttl));
    et_guard_lost(g, 1);
    ck_assert_int_eq(et_guard_state(g), ET_OB_FAILED);
    et_guard_view(g, &v);
    ck_assert_int_ne(v.refusing_since, 0);
    ck_assert(et_guard_due(g, t0 + apr_time_from_sec(3), ttl));
    /* the check finds it down: that is news (the failure alone was not) */
    ck_assert_int_eq(et_guard_record(g, t0 + apr_time_from_sec(3),
                                     ET_OB_DOWN, -1, -1), ET_GUARD_REFUSING);
    ck_assert(et_guard_due(g, t0 + apr_time_from_sec(4), ttl));
    ck_assert_int_eq(et_guard_record(g, t0 + apr_time_from_sec(4),
                                     ET_OB_WRITABLE, -1, -1),
                     ET_GUARD_RECOVERED);
    /* a failure that the check does not confirm: no news either way */
    et_guard_lost(g, 1);
    ck_assert(et_guard_due(g, t0 + apr_time_from_sec(5), ttl));
    ck_assert_int_eq(et_guard_record(g, t0 + apr_time_from_sec(5),
                                     ET_OB_WRITABLE, -1, -1), ET_GUARD_SAME);
    et_guard_view(g, &v);
    ck_assert_int_eq(v.refusing_since, 0);
}
END_TEST

START_TEST(stuck_checker_is_replaced)
{
    apr_uint64_t mem[32];
    et_guard_t *g = et_guard_init(mem, 1, apr_time_from_sec(5));
    apr_time_t t = apr_time_from_sec(5);

    ck_assert(et_guard_due(g, t, apr_time_from_msec(100)));
    /* it died without recording */
    ck_assert(!et_guard_due(g, t + apr_time_from_sec(9),
                            apr_time_from_msec(100)));
    ck_assert(et_guard_due(g, t + apr_time_from_sec(11),
                           apr_time_from_msec(100)));
}
END_TEST

START_TEST(refused_counts_and_one_line_a_second)
{
    apr_uint64_t mem[128];
    et_guard_t *g = et_guard_init(mem, 2, 0);
    apr_time_t t = apr_time_from_sec(500);
    apr_uint32_t count = 0, refused, lost;
    et_guard_view_t v;
    int lines = 0, i;

    for (i = 0; i < 10; i++) {
        lines += et_guard_refused(g, 0, t + apr_time_from_msec(i * 10),
                                  &count);
    }
    ck_assert_int_eq(lines, 1);
    ck_assert_uint_eq(count, 1);      /* the first, said at once */
    ck_assert(et_guard_refused(g, 1, t + apr_time_from_sec(1), &count));
    ck_assert_uint_eq(count, 10);     /* the 9 held back, and this one */
    et_guard_refused(g, 7, t + apr_time_from_sec(1), &count);  /* no site */
    et_guard_lost(g, 1);
    et_guard_lost(g, -1);
    et_guard_site_counts(g, 0, &refused, &lost);
    ck_assert_uint_eq(refused, 10);
    ck_assert_uint_eq(lost, 0);
    et_guard_site_counts(g, 1, &refused, &lost);
    ck_assert_uint_eq(refused, 1);
    ck_assert_uint_eq(lost, 1);
    et_guard_site_counts(g, 2, &refused, &lost);
    ck_assert_uint_eq(refused, 0);
    et_guard_view(g, &v);
    ck_assert_uint_eq(v.refused, 12);
    ck_assert_uint_eq(v.lost, 2);
}
END_TEST

START_TEST(wal_pending_is_what_no_checkpoint_copied)
{
    const char *db = tmp_path("wal.db");
    const char *shm = apr_pstrcat(ut_pool, db, "-shm", NULL);
    sqlite3 *h;
    int i;

    unlink(db);
    ck_assert_int_eq(et_wal_pending(shm), 0);     /* none */
    ck_assert_int_eq(sqlite3_open(db, &h), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(h, "PRAGMA page_size = 4096; "
                                  "PRAGMA journal_mode = WAL; "
                                  "PRAGMA wal_autocheckpoint = 0; "
                                  "CREATE TABLE t (b BLOB)", NULL, NULL,
                                  NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(h, "PRAGMA wal_checkpoint(TRUNCATE)", NULL,
                                  NULL, NULL), SQLITE_OK);
    ck_assert_int_eq(et_wal_pending(shm), 0);
    for (i = 0; i < 10; i++) {
        ck_assert_int_eq(sqlite3_exec(h, "INSERT INTO t VALUES "
                                      "(zeroblob(8000))", NULL, NULL, NULL),
                         SQLITE_OK);
    }
    /* 10 commits of 2-3 pages each, at least */
    ck_assert_int_ge(et_wal_pending(shm), 20 * 4096);
    ck_assert_int_eq(sqlite3_exec(h, "PRAGMA wal_checkpoint(PASSIVE)", NULL,
                                  NULL, NULL), SQLITE_OK);
    ck_assert_int_eq(et_wal_pending(shm), 0);
    sqlite3_close(h);
    unlink(db);
    unlink(shm);
    unlink(apr_pstrcat(ut_pool, db, "-wal", NULL));
}
END_TEST

/* Run @a sql on the test's PostgreSQL server with a connection of its own. */
static void pg_exec(const char *sql)
{
    const apr_dbd_driver_t *drv;
    apr_dbd_t *db = NULL;
    const char *err = NULL;
    int nrows;

    ck_assert_int_eq(apr_dbd_get_driver(ut_pool, "pgsql", &drv), APR_SUCCESS);
    ck_assert_msg(apr_dbd_open_ex(drv, ut_pool, getenv("ET_TEST_PGSQL"), &db,
                                  &err) == APR_SUCCESS, "pgsql: %s",
                  err ? err : "?");
    ck_assert_int_eq(apr_dbd_query(drv, db, &nrows, sql), 0);
    apr_dbd_close(drv, db);
}

START_TEST(outbox_writable_and_read_only)
{
    et_outbox_t *ob;
    const char *err = NULL, *spec;
    const char *db = tmp_path("writable.db");

    unlink(db);
    spec = apr_pstrcat(ut_pool, "sqlite3:", db, NULL);
    ck_assert_int_eq(et_outbox_open(&ob, ut_pool, spec, 1, &err), APR_SUCCESS);
    ck_assert_int_eq(et_outbox_writable(ob), APR_SUCCESS);
    ck_assert(!et_outbox_full(ob));
    et_outbox_close(ob);
    unlink(db);
    if (!ut_have_pgsql()) {
        return;
    }
    spec = ut_pgsql_fresh();
    ck_assert_int_eq(et_outbox_open(&ob, ut_pool, spec, 1, &err), APR_SUCCESS);
    ck_assert_int_eq(et_outbox_writable(ob), APR_SUCCESS);
    et_outbox_close(ob);
    /* a database whose sessions start read-only (as on a standby, or in
     * maintenance): it answers, and cannot write */
    pg_exec("DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET "
            "default_transaction_read_only = on', current_database()); "
            "END $$");
    ck_assert_int_eq(et_outbox_open(&ob, ut_pool, spec, 0, &err), APR_SUCCESS);
    ck_assert_int_eq(et_outbox_writable(ob), APR_EACCES);
    ck_assert_str_eq(et_outbox_error(ob), "the database is read-only");
    et_outbox_close(ob);
    /* its sessions are read-only now: a transaction that says otherwise */
    pg_exec("BEGIN READ WRITE; "
            "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I RESET "
            "default_transaction_read_only', current_database()); END $$; "
            "COMMIT");
    ck_assert_int_eq(et_outbox_open(&ob, ut_pool, spec, 0, &err), APR_SUCCESS);
    ck_assert_int_eq(et_outbox_writable(ob), APR_SUCCESS);
    et_outbox_close(ob);
}
END_TEST

Suite *guard_suite(void)
{
    Suite *s = suite_create("guard");
    TCase *tc = tcase_create("guard");

    tcase_add_checked_fixture(tc, ut_setup, ut_teardown);
    tcase_add_test(tc, reserve_path_for_sqlite_only);
    tcase_add_test(tc, reserve_is_held_released_and_held_again);
    tcase_add_test(tc, reserve_that_cannot_be_held_takes_nothing);
    tcase_add_test(tc, room_decision_with_hysteresis);
    tcase_add_test(tc, wal_pending_is_what_no_checkpoint_copied);
    tcase_add_test(tc, outbox_writable_and_read_only);
    tcase_add_test(tc, state_refusing_since_and_recovered);
    tcase_add_test(tc, stuck_checker_is_replaced);
    tcase_add_test(tc, refused_counts_and_one_line_a_second);
    suite_add_tcase(s, tc);
    return s;
}
