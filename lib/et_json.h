/* Licensed under the Apache License, Version 2.0. */
/**
 * @file et_json.h
 * @brief The one place that talks to jansson: parsing with limits, pool-bound
 *        references and compact serialisation.
 */
#ifndef ET_JSON_H
#define ET_JSON_H

#include <apr_pools.h>
#include <jansson.h>

/**
 * Parse @a len bytes as one JSON object (not an array or scalar), at most
 * @a max_depth levels deep. The returned reference is released when @a p is
 * cleared. On failure *err says why, in words fit for a log line (it never
 * quotes the input).
 */
apr_status_t et_json_parse_object(apr_pool_t *p, const char *buf,
                                  apr_size_t len, int max_depth,
                                  json_t **out, const char **err);

/** Compact UTF-8 text of @a j (key order kept), allocated from @a p. */
const char *et_json_dump(apr_pool_t *p, const json_t *j, apr_size_t *len);

/** Keep @a j alive until @a p is cleared (takes over one reference). */
json_t *et_json_pool_own(apr_pool_t *p, json_t *j);

/**
 * The scalar at @a field of object @a obj as text: a string as is, an
 * integer in decimal. APR_NOTFOUND if absent or null, APR_EINVAL (with *err)
 * if it is an object, array, boolean, real or empty string.
 */
apr_status_t et_json_scalar_id(apr_pool_t *p, const json_t *obj,
                               const char *field, const char **id,
                               const char **err);

#endif /* ET_JSON_H */
