/* Licensed under the Apache License, Version 2.0. */
/*
 * The circuit breaker's state machine:
 *   CLOSED  --threshold consecutive failures-->  OPEN (pause = min)
 *   OPEN    --pause over, one call admitted-->   PROBING
 *   PROBING --healthy-->  CLOSED;  --failure-->  OPEN (pause doubled, <= max)
 * Any healthy answer closes it (a call already under way may bring one).
 */

#include "et_circuit.h"

const char *et_circuit_state_name(et_cb_state_e st)
{
    switch (st) {
    case ET_CB_OPEN:
        return "open";
    case ET_CB_PROBING:
        return "probing";
    default:
        return "closed";
    }
}

int et_circuit_admit(et_circuit_t *c, const et_circuit_conf_t *conf,
                     apr_time_t now)
{
    switch (c->state) {
    case ET_CB_CLOSED:
        return 1;
    case ET_CB_OPEN:
        if (now >= c->open_until) {
            c->state = ET_CB_PROBING;
            c->probe_until = 0;
            return 1;
        }
        return 0;
    default:
        return 0;                     /* one probe at a time */
    }
}

static void open_circuit(et_circuit_t *c, const et_circuit_conf_t *conf,
                         apr_time_t now)
{
    if (c->state == ET_CB_CLOSED || c->pause <= 0) {
        c->pause = conf->min_pause;
    }
    else {
        c->pause *= 2;
        if (c->pause > conf->max_pause) {
            c->pause = conf->max_pause;
        }
    }
    c->state = ET_CB_OPEN;
    c->open_until = now + c->pause;
    c->probe_until = 0;
}

int et_circuit_record(et_circuit_t *c, const et_circuit_conf_t *conf,
                      int healthy, apr_time_t now)
{
    et_cb_state_e before = c->state;

    if (healthy) {
        c->failures = 0;
        c->pause = 0;
        c->state = ET_CB_CLOSED;
        c->open_until = 0;
        c->probe_until = 0;
    }
    else {
        c->failures++;
        if (c->state == ET_CB_PROBING
            || (c->state == ET_CB_CLOSED && conf->threshold > 0
                && c->failures >= conf->threshold)) {
            open_circuit(c, conf, now);
        }
        /* OPEN: a call that started before the pause; it changes nothing */
    }
    return c->state != before ? (int)before : -1;
}
