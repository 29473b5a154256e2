/* Licensed under the Apache License, Version 2.0. */
/**
 * @file et_site.h
 * @brief What one site (virtual host) configures for its calls. The httpd
 *        glue fills it from directives; capture and dispatch only read it.
 *
 * Thread safety: built at configuration time, read-only afterwards, so it is
 * shared freely between threads and inherited by forked processes.
 */
#ifndef ET_SITE_H
#define ET_SITE_H

#include <apr_tables.h>
#include "et_event.h"
#include "et_retry.h"
#include "et_http.h"
#include "et_circuit.h"

typedef struct et_site_t {
    const char *name;                 /* key stored with each event */
    const char *endpoint;             /* root URL, NULL: this site sends nothing */
    et_format_e format;
    const char *user_agent;
    const et_retry_t *retry;
    apr_interval_time_t connect_timeout;
    apr_interval_time_t timeout;      /* whole call */
    apr_size_t response_keep;         /* bytes of a refusal's body kept */
    apr_array_header_t *secrets;      /* et_secret_t *; none: unsigned */
    apr_array_header_t *headers;      /* const char * "Name: value", extra */
    et_tls_t tls;
    et_proxy_t proxy;                 /* off unless EventTriggerProxy */
    et_circuit_conf_t circuit;        /* when to pause the endpoint */
} et_site_t;

#define ET_USER_AGENT_DEFAULT "Mashery Event Trigger 1.0"

#endif /* ET_SITE_H */
