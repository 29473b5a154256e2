/* Licensed under the Apache License, Version 2.0. */
/**
 * @file et_url.h
 * @brief The Event Trigger call URL: {root}/v1/{object}/{id}?event=..&txn=..
 */
#ifndef ET_URL_H
#define ET_URL_H

#include <apr_pools.h>
#include "et_event.h"

/**
 * Check an endpoint root: absolute http or https URL with a host, no query,
 * no fragment, no user info. On failure *err says what is wrong.
 */
apr_status_t et_url_check_root(apr_pool_t *p, const char *root,
                               const char **err);

/**
 * Check a forward proxy's URL: http or https, a host, no user info (the
 * credentials come from a file), no path, query or fragment. *norm is
 * scheme://host:port, with the scheme's port when none is given (libcurl's
 * own default is 1080); errors never repeat the URL, which may hold a
 * password.
 */
apr_status_t et_url_check_proxy(apr_pool_t *p, const char *url,
                                const char **norm, const char **err);

/**
 * Build the call URL. The root keeps its path; a trailing '/' does not make
 * "//". @a oid is escaped as exactly one path segment (apr_escape_path_segment),
 * and "." and ".." are escaped as %2E so no client or server collapses them.
 */
const char *et_url_build(apr_pool_t *p, const char *root, et_object_e obj,
                         const char *oid, et_event_e ev, const char *txn);

/**
 * The URL of a before-save call (shared/protocol.md):
 * {root}/v1/{object}?event=pre-create&txn=.. for a create (no id yet),
 * {root}/v1/{object}/{id}?event=pre-update|pre-delete&txn=.. otherwise.
 */
const char *et_url_build_before(apr_pool_t *p, const char *root,
                                et_object_e obj, const char *oid,
                                et_event_e ev, const char *txn);

/** A new transaction id: 16 random bytes as 32 lowercase hex characters. */
apr_status_t et_txn_new(apr_pool_t *p, const char **txn);

#endif /* ET_URL_H */
