/* Licensed under the Apache License, Version 2.0. */
/*
 * Fail closed: the reserve and the shared state, see et_guard.h.
 */

#include <fcntl.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <apr_strings.h>
#include <apr_atomic.h>

#include "et_guard.h"

/* A checker that has held the right to check this long has died (a child
 * that crashed mid-check): another may take it. */
#define ET_GUARD_STUCK_MS 10000

const char *et_ob_state_name(et_ob_state_e st)
{
    switch (st) {
    case ET_OB_WRITABLE:
        return "writable";
    case ET_OB_FULL:
        return "full";
    case ET_OB_DOWN:
        return "down";
    case ET_OB_READONLY:
        return "read-only";
    case ET_OB_FAILED:
        return "failing";
    case ET_OB_SPOOLED:
        return "spooled";
    default:
        return "unknown";
    }
}

const char *et_ob_state_reason(et_ob_state_e st)
{
    switch (st) {
    case ET_OB_FULL:
        return "the outbox's disk is full";
    case ET_OB_DOWN:
        return "the outbox's database does not answer";
    case ET_OB_READONLY:
        return "the outbox is not writable";
    case ET_OB_FAILED:
        return "the outbox failed to store an event";
    case ET_OB_SPOOLED:
        return "events wait in the local spool until the outbox takes "
               "them";
    default:
        return "the outbox cannot store events";
    }
}

const char *et_reserve_path(apr_pool_t *p, const char *store)
{
    if (!store || strncmp(store, "sqlite3:", 8) || !store[8]) {
        return NULL;
    }
    return apr_pstrcat(p, store + 8, ".reserve", NULL);
}

apr_status_t et_reserve_hold(const char *path, apr_off_t size)
{
    struct stat st;
    int fd, rc;

    fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        return errno;
    }
    if (fstat(fd, &st) == 0 && (apr_off_t)st.st_blocks * 512 >= size) {
        close(fd);
        return APR_SUCCESS;
    }
    /* allocated blocks, not a sparse file: the room is really taken */
    rc = posix_fallocate(fd, 0, (off_t)size);
    if (rc != 0) {
        /* give back what a partial allocation took */
        if (ftruncate(fd, 0) < 0) {
            /* nothing more to do: the next attempt truncates again */
        }
        close(fd);
        return rc;
    }
    close(fd);
    return APR_SUCCESS;
}

int et_reserve_held(const char *path, apr_off_t size)
{
    struct stat st;

    return stat(path, &st) == 0 && (apr_off_t)st.st_blocks * 512 >= size;
}

apr_status_t et_reserve_release(const char *path)
{
    struct stat st;

    if (stat(path, &st) != 0) {
        return errno;
    }
    if (st.st_blocks == 0) {
        return APR_ENOENT;
    }
    return truncate(path, 0) == 0 ? APR_SUCCESS : errno;
}

apr_status_t et_fs_free(const char *path, apr_off_t *avail)
{
    struct statvfs sv;

    if (statvfs(path, &sv) != 0) {
        return errno;
    }
    *avail = (apr_off_t)sv.f_bavail * (apr_off_t)sv.f_frsize;
    return APR_SUCCESS;
}

apr_off_t et_wal_pending(const char *shm)
{
    unsigned char hdr[100];
    apr_uint16_t page16;
    apr_uint32_t mx, backfill, page;
    int fd = open(shm, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0) {
        return 0;
    }
    n = pread(fd, hdr, sizeof(hdr), 0);
    close(fd);
    if (n != (ssize_t)sizeof(hdr)) {
        return 0;
    }
    /* native byte order, as SQLite writes the index */
    memcpy(&page16, hdr + 14, 2);
    memcpy(&mx, hdr + 16, 4);
    memcpy(&backfill, hdr + 96, 4);
    page = page16 == 1 ? 65536 : page16;
    if (mx <= backfill) {
        return 0;
    }
    return (apr_off_t)(mx - backfill) * page;
}

et_ob_state_e et_space_decide(apr_off_t avail, int held, apr_off_t reserve,
                              apr_off_t wal, int *hold)
{
    apr_off_t need = reserve + (wal > 0 ? wal : 0);

    *hold = 0;
    if (!held) {
        if (avail >= reserve + need) {
            *hold = 1;
        }
        return ET_OB_FULL;
    }
    return avail >= need ? ET_OB_WRITABLE : ET_OB_FULL;
}

et_space_t *et_space_of(apr_pool_t *p, const char *store, apr_off_t reserve)
{
    et_space_t *sp;
    const char *slash;

    if (!et_reserve_path(p, store)) {
        return NULL;
    }
    sp = apr_pcalloc(p, sizeof(*sp));
    sp->file = apr_pstrdup(p, store + 8);
    sp->shm = apr_pstrcat(p, sp->file, "-shm", NULL);
    sp->reserve_path = et_reserve_path(p, store);
    sp->reserve = reserve;
    slash = strrchr(sp->file, '/');
    sp->dir = !slash ? "."
              : slash == sp->file ? "/"
              : apr_pstrndup(p, sp->file, (apr_size_t)(slash - sp->file));
    return sp;
}

et_ob_state_e et_space_check(const et_space_t *sp, apr_off_t *avail,
                             int *held)
{
    et_ob_state_e st;
    int hold;

    *held = 0;
    if (et_fs_free(sp->dir, avail) != APR_SUCCESS) {
        *avail = -1;
        return ET_OB_READONLY;
    }
    if (access(sp->file, W_OK) != 0 || access(sp->dir, W_OK | X_OK) != 0) {
        return ET_OB_READONLY;        /* a permission lost */
    }
    *held = et_reserve_held(sp->reserve_path, sp->reserve);
    st = et_space_decide(*avail, *held, sp->reserve, et_wal_pending(sp->shm),
                         &hold);
    if (hold && et_reserve_hold(sp->reserve_path, sp->reserve) == APR_SUCCESS
        && et_fs_free(sp->dir, avail) == APR_SUCCESS) {
        *held = 1;
        st = et_space_decide(*avail, 1, sp->reserve,
                             et_wal_pending(sp->shm), &hold);
    }
    return st;
}

/*
 * The shared state. Every field is read and written with apr_atomic_*32
 * only; the times are milliseconds after `base` (written once, before the
 * processes that share it exist), seconds for the wall clock ones.
 */
/* Before-save latency: a histogram of fixed buckets (upper bounds, ms),
 * so that children can add to it with one atomic increment and the
 * status page reads percentiles to the bucket. */
static const double bs_bounds_ms[] = {
    0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300,
    500, 750, 1000, 1500, 2000, 3000, 5000, 10000, 30000, 60000
};
#define BS_BUCKETS (sizeof(bs_bounds_ms) / sizeof(bs_bounds_ms[0]))

typedef struct et_guard_site_t {
    volatile apr_uint32_t refused;
    volatile apr_uint32_t lost;
    volatile apr_uint32_t before[ET_BS_KINDS];
    volatile apr_uint32_t before_ms[BS_BUCKETS];
} et_guard_site_t;

struct et_guard_t {
    apr_time_t base;
    apr_uint32_t nsites;
    volatile apr_uint32_t checked_ms; /* the last check */
    volatile apr_uint32_t checking;   /* 0, or when a check began (ms|1) */
    volatile apr_uint32_t stale;      /* check at the next request */
    volatile apr_uint32_t state;      /* et_ob_state_e */
    volatile apr_uint32_t since_s;    /* refusing since, 0: not */
    volatile apr_uint32_t avail_kib;  /* 0xffffffff: not known */
    volatile apr_uint32_t reserve_kib;
    volatile apr_uint32_t log_s;      /* the last refusal line */
    volatile apr_uint32_t unlogged;   /* refused since that line */
    volatile apr_uint32_t refused;    /* every site, also those out of range */
    volatile apr_uint32_t lost;
    volatile apr_uint32_t spool;      /* in the local spool, or going in */
    volatile apr_uint32_t spooled;    /* since the start */
    volatile apr_uint32_t forwarded;
    volatile apr_uint32_t spool_log_s;    /* the last spooling line */
    volatile apr_uint32_t spool_unlogged;
    et_guard_site_t site[1];          /* nsites of them */
};

#define KIB_UNKNOWN 0xffffffffU

apr_size_t et_guard_size(int nsites)
{
    return APR_ALIGN_DEFAULT(sizeof(et_guard_t)
                             + (apr_size_t)(nsites > 1 ? nsites - 1 : 0)
                               * sizeof(et_guard_site_t));
}

et_guard_t *et_guard_init(void *mem, int nsites, apr_time_t now)
{
    et_guard_t *g = mem;

    memset(mem, 0, et_guard_size(nsites));
    g->base = now;
    g->nsites = (apr_uint32_t)(nsites > 0 ? nsites : 0);
    g->stale = 1;
    g->avail_kib = KIB_UNKNOWN;
    g->reserve_kib = KIB_UNKNOWN;
    return g;
}

static apr_uint32_t ms_of(const et_guard_t *g, apr_time_t t)
{
    return (apr_uint32_t)apr_time_as_msec(t - g->base);
}

int et_guard_due(et_guard_t *g, apr_time_t now, apr_interval_time_t ttl)
{
    apr_uint32_t n = ms_of(g, now);
    apr_uint32_t busy;

    if (!apr_atomic_read32(&g->stale)
        && n - apr_atomic_read32(&g->checked_ms)
           < (apr_uint32_t)apr_time_as_msec(ttl)) {
        return 0;
    }
    busy = apr_atomic_read32(&g->checking);
    if (busy && n - (busy & ~1U) < ET_GUARD_STUCK_MS) {
        return 0;                     /* another is checking */
    }
    return apr_atomic_cas32(&g->checking, n | 1, busy) == busy;
}

static apr_uint32_t kib(apr_off_t bytes)
{
    if (bytes < 0) {
        return KIB_UNKNOWN;
    }
    bytes /= 1024;
    return bytes >= (apr_off_t)KIB_UNKNOWN ? KIB_UNKNOWN - 1
                                           : (apr_uint32_t)bytes;
}

et_guard_change_e et_guard_record(et_guard_t *g, apr_time_t now,
                                  et_ob_state_e st, apr_off_t avail,
                                  apr_off_t reserve)
{
    et_ob_state_e was = apr_atomic_read32(&g->state);
    et_guard_change_e change = ET_GUARD_SAME;
    /* a failed store alone (ET_OB_FAILED) is said by its ET00032: this
     * check says whether it was more */
    int was_refusing = was != ET_OB_WRITABLE && was != ET_OB_UNKNOWN
                       && was != ET_OB_FAILED;

    apr_atomic_set32(&g->avail_kib, kib(avail));
    apr_atomic_set32(&g->reserve_kib, kib(reserve));
    if (st == ET_OB_WRITABLE) {
        if (was_refusing) {
            change = ET_GUARD_RECOVERED;
        }
        apr_atomic_set32(&g->since_s, 0);
    }
    else if (!was_refusing) {
        change = ET_GUARD_REFUSING;
        if (was != ET_OB_FAILED || !apr_atomic_read32(&g->since_s)) {
            apr_atomic_set32(&g->since_s, (apr_uint32_t)apr_time_sec(now));
        }
    }
    apr_atomic_set32(&g->state, st);
    apr_atomic_set32(&g->checked_ms, ms_of(g, now));
    apr_atomic_set32(&g->stale, 0);
    apr_atomic_set32(&g->checking, 0);
    return change;
}

void et_guard_invalidate(et_guard_t *g)
{
    apr_atomic_set32(&g->stale, 1);
}

et_ob_state_e et_guard_state(const et_guard_t *g)
{
    return apr_atomic_read32((volatile apr_uint32_t *)&g->state);
}

int et_guard_refused(et_guard_t *g, int site, apr_time_t now,
                     apr_uint32_t *count)
{
    apr_uint32_t s = (apr_uint32_t)apr_time_sec(now);
    apr_uint32_t last;

    apr_atomic_inc32(&g->refused);
    if (site >= 0 && (apr_uint32_t)site < g->nsites) {
        apr_atomic_inc32(&g->site[site].refused);
    }
    apr_atomic_inc32(&g->unlogged);
    last = apr_atomic_read32(&g->log_s);
    if (last == s || apr_atomic_cas32(&g->log_s, s, last) != last) {
        return 0;
    }
    *count = apr_atomic_xchg32(&g->unlogged, 0);
    return 1;
}

void et_guard_lost(et_guard_t *g, int site)
{
    apr_uint32_t was;

    apr_atomic_inc32(&g->lost);
    if (site >= 0 && (apr_uint32_t)site < g->nsites) {
        apr_atomic_inc32(&g->site[site].lost);
    }
    /* Refuse at once: the requests that come while a check is under way
     * would otherwise be admitted on the last, now doubtful, outcome. */
    was = apr_atomic_read32(&g->state);
    if ((was == ET_OB_WRITABLE || was == ET_OB_UNKNOWN)
        && apr_atomic_cas32(&g->state, ET_OB_FAILED, was) == was) {
        apr_atomic_set32(&g->since_s,
                         (apr_uint32_t)apr_time_sec(apr_time_now()));
    }
    et_guard_invalidate(g);
}

int et_guard_spool_join(et_guard_t *g, apr_uint32_t n)
{
    for (;;) {
        apr_uint32_t v = apr_atomic_read32(&g->spool);

        if (!v) {
            return 0;
        }
        if (apr_atomic_cas32(&g->spool, v + n, v) == v) {
            return 1;
        }
    }
}

void et_guard_spool_add(et_guard_t *g, apr_uint32_t n)
{
    apr_atomic_add32(&g->spool, n);
}

/* Take @a n from the count, not below 0 (a previous generation's events,
 * counted by nobody here, may be forwarded too). */
static apr_uint32_t spool_sub(et_guard_t *g, apr_uint32_t n)
{
    for (;;) {
        apr_uint32_t v = apr_atomic_read32(&g->spool);
        apr_uint32_t to = v > n ? v - n : 0;

        if (apr_atomic_cas32(&g->spool, to, v) == v) {
            return to;
        }
    }
}

int et_guard_spool_stored(et_guard_t *g, apr_uint32_t ok,
                          apr_uint32_t failed, apr_time_t now,
                          apr_uint32_t *count)
{
    apr_uint32_t s = (apr_uint32_t)apr_time_sec(now);
    apr_uint32_t last;

    if (failed) {
        spool_sub(g, failed);
    }
    if (!ok) {
        return 0;
    }
    apr_atomic_add32(&g->spooled, ok);
    apr_atomic_add32(&g->spool_unlogged, ok);
    last = apr_atomic_read32(&g->spool_log_s);
    if (last == s || apr_atomic_cas32(&g->spool_log_s, s, last) != last) {
        return 0;
    }
    *count = apr_atomic_xchg32(&g->spool_unlogged, 0);
    return 1;
}

apr_uint32_t et_guard_spool_forwarded(et_guard_t *g, apr_uint32_t n)
{
    apr_atomic_add32(&g->forwarded, n);
    return spool_sub(g, n);
}

apr_uint32_t et_guard_spool_count(const et_guard_t *g)
{
    return apr_atomic_read32((volatile apr_uint32_t *)&g->spool);
}

int et_guard_spool_set(et_guard_t *g, apr_uint32_t was, apr_uint32_t n)
{
    return apr_atomic_cas32(&g->spool, n, was) == was;
}

void et_guard_view(const et_guard_t *g, et_guard_view_t *v)
{
    et_guard_t *m = (et_guard_t *)g;  /* apr_atomic_read32 is not const */
    apr_uint32_t a = apr_atomic_read32(&m->avail_kib);
    apr_uint32_t r = apr_atomic_read32(&m->reserve_kib);
    apr_uint32_t since = apr_atomic_read32(&m->since_s);

    v->state = apr_atomic_read32(&m->state);
    v->checked = v->state == ET_OB_UNKNOWN
                 ? 0 : g->base + apr_time_from_msec(
                                     apr_atomic_read32(&m->checked_ms));
    v->refusing_since = since ? apr_time_from_sec(since) : 0;
    v->avail = a == KIB_UNKNOWN ? -1 : (apr_off_t)a * 1024;
    v->reserve = r == KIB_UNKNOWN ? -1 : (apr_off_t)r * 1024;
    v->refused = apr_atomic_read32(&m->refused);
    v->lost = apr_atomic_read32(&m->lost);
    v->spool = apr_atomic_read32(&m->spool);
    v->spooled = apr_atomic_read32(&m->spooled);
    v->forwarded = apr_atomic_read32(&m->forwarded);
    if (v->spool && (v->state == ET_OB_WRITABLE
                     || v->state == ET_OB_UNKNOWN)) {
        /* the outbox answers, but requests are refused all the same */
        v->state = ET_OB_SPOOLED;
    }
}

void et_guard_site_counts(const et_guard_t *g, int site,
                          apr_uint32_t *refused, apr_uint32_t *lost)
{
    et_guard_t *m = (et_guard_t *)g;

    *refused = *lost = 0;
    if (site >= 0 && (apr_uint32_t)site < g->nsites) {
        *refused = apr_atomic_read32(&m->site[site].refused);
        *lost = apr_atomic_read32(&m->site[site].lost);
    }
}

const char *et_bs_kind_name(et_bs_kind_e k)
{
    static const char *const names[] = { "proceed", "enriched", "refused",
                                         "failed_open", "failed_closed" };

    return (unsigned)k < ET_BS_KINDS ? names[k] : "?";
}

void et_guard_before(et_guard_t *g, int site, et_bs_kind_e kind,
                     apr_interval_time_t took)
{
    double ms = (double)took / 1000.0;
    apr_size_t b = 0;

    if (site < 0 || (apr_uint32_t)site >= g->nsites
        || (unsigned)kind >= ET_BS_KINDS) {
        return;
    }
    apr_atomic_inc32(&g->site[site].before[kind]);
    if (took < 0) {
        return;                       /* no call was made */
    }
    while (b < BS_BUCKETS - 1 && ms > bs_bounds_ms[b]) {
        b++;
    }
    apr_atomic_inc32(&g->site[site].before_ms[b]);
}

void et_guard_before_view(const et_guard_t *g, int site, et_bs_view_t *v)
{
    et_guard_t *m = (et_guard_t *)g;
    apr_uint32_t h[BS_BUCKETS], n = 0, run = 0;
    apr_size_t b;
    int k;

    memset(v, 0, sizeof(*v));
    if (site < 0 || (apr_uint32_t)site >= g->nsites) {
        return;
    }
    for (k = 0; k < ET_BS_KINDS; k++) {
        v->count[k] = apr_atomic_read32(&m->site[site].before[k]);
    }
    for (b = 0; b < BS_BUCKETS; b++) {
        h[b] = apr_atomic_read32(&m->site[site].before_ms[b]);
        n += h[b];
    }
    v->calls = n;
    for (b = 0; n && b < BS_BUCKETS; b++) {
        run += h[b];
        if (v->p50_ms == 0 && (apr_uint64_t)run * 2 >= n) {
            v->p50_ms = bs_bounds_ms[b];
        }
        if ((apr_uint64_t)run * 100 >= (apr_uint64_t)n * 99) {
            v->p99_ms = bs_bounds_ms[b];
            break;
        }
    }
}
