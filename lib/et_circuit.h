/* Licensed under the Apache License, Version 2.0. */
/**
 * @file et_circuit.h
 * @brief Endpoint health (a circuit breaker): after repeated consecutive
 *        failures an endpoint is paused and probed now and then with one
 *        call instead of being hammered with all of them.
 *
 * Not thread-safe: the dispatcher guards each et_circuit_t with its lock.
 */
#ifndef ET_CIRCUIT_H
#define ET_CIRCUIT_H

#include <apr_time.h>

typedef enum {
    ET_CB_CLOSED = 0,         /* healthy: every call goes */
    ET_CB_OPEN = 1,           /* paused until open_until */
    ET_CB_PROBING = 2         /* one call is testing the endpoint */
} et_cb_state_e;

typedef struct et_circuit_conf_t {
    int threshold;            /* consecutive failures that open; 0: never */
    apr_interval_time_t min_pause;
    apr_interval_time_t max_pause;
} et_circuit_conf_t;

typedef struct et_circuit_t {
    et_cb_state_e state;
    int failures;             /* consecutive */
    apr_interval_time_t pause;    /* the current (doubling) pause */
    apr_time_t open_until;
    /* the dispatcher holds the probe of this pause (taken through the
     * outbox, one dispatcher among all machines) until then; 0: not held.
     * Any change of state gives it up. */
    apr_time_t probe_until;
} et_circuit_t;

/** Names for logs and the status page: "closed", "open", "probing". */
const char *et_circuit_state_name(et_cb_state_e st);

/**
 * May a call to this endpoint start now? An open circuit whose pause is
 * over lets exactly one call through as the probe (state PROBING).
 */
int et_circuit_admit(et_circuit_t *c, const et_circuit_conf_t *conf,
                     apr_time_t now);

/**
 * Record an attempt's outcome: @a healthy is any answer that shows the
 * endpoint works (2xx, or a refusal such as 4xx); transport errors, 408,
 * 429 and 5xx are not. Returns the previous state when the state changed,
 * -1 otherwise.
 */
int et_circuit_record(et_circuit_t *c, const et_circuit_conf_t *conf,
                      int healthy, apr_time_t now);

#endif /* ET_CIRCUIT_H */
