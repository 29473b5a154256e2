/* Licensed under the Apache License, Version 2.0. */
/*
 * bench/calls.c: the two ways of making the dispatcher's calls, alone,
 * against the same receiver (bench/calls.sh runs it):
 *
 *   threads N  each of N threads makes its calls one after the other with
 *              curl_easy_perform() (the dispatcher until 2026-11-27: an
 *              apr_thread_pool of EventTriggerWorkers threads)
 *   multi N    one thread makes N calls at once through a libcurl multi
 *              handle (the dispatcher's calling thread, lib/et_http_curl.c)
 *
 * Both PUT the same JSON body with the same headers and options, reuse
 * their connections, and count every answer that is not a 200 as a
 * failure. Prints one line: mode, calls per second, CPU time per call
 * (user + system, this process), context switches per call.
 *
 *   calls URL TOTAL N threads|multi [BODY]
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

#define MAX_N 256

static const char *body =
    "{\"id\":123456,\"name\":\"Ada\",\"email\":\"ada@example.com\","
    "\"status\":\"active\",\"created\":\"2026-11-27T00:00:00Z\"}";
static const char *url;
static long per_thread;
static long failures;
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t discard(char *d, size_t size, size_t n, void *baton)
{
    (void)d;
    (void)baton;
    return size * n;
}

/* The options the dispatcher sets for a call (lib/et_http_curl.c). */
static struct curl_slist *prepare(CURL *c)
{
    struct curl_slist *h = NULL;

    h = curl_slist_append(h, "Accept: application/json");
    h = curl_slist_append(h, "User-Agent: mod_eventtrigger-bench");
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PUT");
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                     (curl_off_t)strlen(body));
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_PRIVATE, h);
    return h;
}

static int answered_200(CURL *c, CURLcode rc)
{
    long code = 0;

    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    return rc == CURLE_OK && code == 200;
}

static void failed(void)
{
    pthread_mutex_lock(&fail_lock);
    failures++;
    pthread_mutex_unlock(&fail_lock);
}

static void *one_thread(void *arg)
{
    CURL *c = curl_easy_init();
    long i;

    (void)arg;
    for (i = 0; c && i < per_thread; i++) {
        struct curl_slist *h = prepare(c);

        if (!answered_200(c, curl_easy_perform(c))) {
            failed();
        }
        curl_slist_free_all(h);
    }
    if (c) {
        curl_easy_cleanup(c);
    }
    return NULL;
}

static void run_threads(int n)
{
    pthread_t t[MAX_N];
    int i;

    for (i = 0; i < n; i++) {
        pthread_create(&t[i], NULL, one_thread, NULL);
    }
    for (i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
    }
}

static void run_multi(int n, long total)
{
    CURLM *m = curl_multi_init();
    CURL *idle[MAX_N];
    long started = 0, done = 0;
    int nidle = 0, running = 0, i;

    for (i = 0; i < n; i++) {
        idle[nidle++] = curl_easy_init();
    }
    while (done < total) {
        CURLMsg *msg;
        int left, still;

        while (running < n && started < total) {
            CURL *c = idle[--nidle];

            prepare(c);
            curl_multi_add_handle(m, c);
            started++;
            running++;
        }
        curl_multi_perform(m, &still);
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            struct curl_slist *h = NULL;
            CURL *c = msg->easy_handle;

            if (msg->msg != CURLMSG_DONE) {
                continue;
            }
            if (!answered_200(c, msg->data.result)) {
                failed();
            }
            curl_easy_getinfo(c, CURLINFO_PRIVATE, (char **)&h);
            curl_multi_remove_handle(m, c);
            curl_slist_free_all(h);
            idle[nidle++] = c;
            running--;
            done++;
        }
        if (running == n || started == total) {
            curl_multi_poll(m, NULL, 0, 1000, NULL);
        }
    }
    for (i = 0; i < nidle; i++) {
        curl_easy_cleanup(idle[i]);
    }
    curl_multi_cleanup(m);
}

static double seconds(const struct timespec *t)
{
    return t->tv_sec + t->tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    struct timespec t0, t1;
    struct rusage ru;
    long total;
    int n, multi;
    double wall, cpu;

    if (argc < 5 || argc > 6 || (n = atoi(argv[3])) < 1 || n > MAX_N
        || (total = atol(argv[2])) < n) {
        fprintf(stderr, "usage: calls URL TOTAL N threads|multi [BODY]\n");
        return 2;
    }
    if (argc == 6) {
        body = argv[5];
    }
    url = argv[1];
    multi = !strcmp(argv[4], "multi");
    per_thread = total / n;
    total = per_thread * n;
    curl_global_init(CURL_GLOBAL_DEFAULT);

    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (multi) {
        run_multi(n, total);
    }
    else {
        run_threads(n);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    getrusage(RUSAGE_SELF, &ru);

    wall = seconds(&t1) - seconds(&t0);
    cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6
          + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    printf("CALLS mode=%s n=%d calls=%ld rate=%.0f cpu_us=%.1f switches=%.2f "
           "failures=%ld\n", multi ? "multi" : "threads", n, total,
           total / wall, cpu * 1e6 / total,
           (double)(ru.ru_nvcsw + ru.ru_nivcsw) / total, failures);
    curl_global_cleanup();
    return failures ? 1 : 0;
}
