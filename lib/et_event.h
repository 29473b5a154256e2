/* Licensed under the Apache License, Version 2.0. */
/**
 * @file et_event.h
 * @brief The Event Trigger vocabulary (objects, events, formats) and the
 *        event record that moves from capture to outbox to dispatcher.
 *
 * httpd-free: APR and jansson only.
 */
#ifndef ET_EVENT_H
#define ET_EVENT_H

#include <apr_pools.h>
#include <apr_time.h>

typedef enum {
    ET_OBJ_NONE = 0,          /* "off" */
    ET_OBJ_MEMBER,
    ET_OBJ_APPLICATION,
    ET_OBJ_KEY,
    ET_OBJ_PACKAGE_KEY
} et_object_e;

typedef enum {
    ET_EV_CREATE = 0,         /* post-create, PUT */
    ET_EV_UPDATE,             /* post-update, PUT */
    ET_EV_DELETE              /* post-delete, DELETE */
} et_event_e;

typedef enum {
    ET_FMT_JSON = 0,
    ET_FMT_FORM
} et_format_e;

/* Delivery state of an outbox row. */
typedef enum {
    ET_ST_PENDING = 0,        /* waiting, retrying or leased to a dispatcher */
    ET_ST_DELIVERED = 1,
    ET_ST_DEAD = 2,           /* out of attempts or refused by the receiver */
    ET_ST_FAILED = 3          /* could not be built from the response */
} et_state_e;

/** Path element and object_type ("member", ...); NULL for ET_OBJ_NONE. */
const char *et_object_name(et_object_e o);
/** Parse "member", "application", "key", "package_key" or "off". */
int et_object_parse(const char *s, et_object_e *o);
/** "post-create", "post-update", "post-delete". */
const char *et_event_name(et_event_e e);
/** Parse "post-create", "post-update" or "post-delete"; non-zero if known. */
int et_event_parse(const char *s, et_event_e *e);
/** "PUT" or "DELETE". */
const char *et_event_method(et_event_e e);
/** "application/json" or "application/x-www-form-urlencoded". */
const char *et_format_content_type(et_format_e f);

/** One event as stored in the outbox. Strings live in the pool that built it. */
typedef struct et_event_t {
    apr_int64_t rowid;        /* outbox key; 0 until stored */
    const char *txn;          /* 32 lowercase hex; webhook-id as well */
    const char *site;         /* the configuring site (virtual host) */
    et_object_e object;
    et_event_e event;
    const char *oid;          /* the object's id, raw (not escaped) */
    const char *url;          /* the full call URL */
    const char *content_type;
    const char *body;         /* encoded body, NUL-terminated */
    apr_size_t body_len;
    apr_time_t created;
    et_state_e state;
    int attempts;             /* attempts made so far */
    const char *error;        /* why it failed, for ET_ST_FAILED/DEAD */
    /* from the admin's request, sent on every attempt (NULL: none) */
    const char *traceparent;  /* the admin's (valid) or one made for it */
    const char *tracestate;   /* the admin's, passed on unchanged */
    const char *headers;      /* "Name: value" lines, '\n'-separated, of
                               * EventTriggerHeader expr= (no CR or LF in
                               * a value) */
    /* as read back from the outbox (listing, status) */
    int last_status;          /* HTTP status of the last attempt, 0: none */
    apr_time_t due;           /* next attempt of a pending event */
    apr_time_t done_at;       /* delivered or dead at */
    /* Set by the dispatcher before the intake stores a fresh event: store
     * it leased to this owner until lease_until if nothing of its object
     * is pending (et_outbox_insert clears lease_owner if it was not). */
    const char *lease_owner;
    apr_time_t lease_until;   /* also: the lease a claim took (the outcome
                               * is written for that lease only) */
    apr_int64_t followed;     /* claimed: 0, or how far (in ids) behind
                               * it the next event of its object was
                               * stored (chained delivery may take
                               * those, et_outbox_claim_next) */
} et_event_t;

#endif /* ET_EVENT_H */
