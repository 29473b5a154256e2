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

/** As et_json_parse_object, for any JSON value (an envelope's root may
 *  be an array). */
apr_status_t et_json_parse_value(apr_pool_t *p, const char *buf,
                                 apr_size_t len, int max_depth,
                                 json_t **out, const char **err);

/** "object", "array", "string", "number", "boolean", "null"; "nothing"
 *  for NULL. */
const char *et_json_type_name(const json_t *j);

/**
 * RFC 6901 JSON Pointer. et_json_pointer_check: NULL if @a ptr is a valid
 * pointer ("" or "/..." with ~0 and ~1 the only escapes), else why not.
 * et_json_pointer_get: the value @a ptr names in @a root (borrowed), or
 * NULL; "" and NULL name @a root itself.
 */
const char *et_json_pointer_check(const char *ptr);
json_t *et_json_pointer_get(const json_t *root, const char *ptr);

/**
 * Set the member @a ptr names (a pointer of one or more tokens) in the
 * object @a root to @a value (reference stolen), making the objects on
 * the way that are missing. -1 if a value on the way is not an object.
 */
int et_json_pointer_set(json_t *root, const char *ptr, json_t *value);

/** Compact UTF-8 text of @a j (key order kept), allocated from @a p. */
const char *et_json_dump(apr_pool_t *p, const json_t *j, apr_size_t *len);

/** Keep @a j alive until @a p is cleared (takes over one reference). */
json_t *et_json_pool_own(apr_pool_t *p, json_t *j);

/**
 * The scalar at @a field of object @a obj as text (@a field is a member
 * name, or a JSON pointer relative to @a obj when it starts with '/'): a string as is, an
 * integer in decimal. APR_NOTFOUND if absent or null, APR_EINVAL (with *err)
 * if it is an object, array, boolean, real or empty string.
 */
apr_status_t et_json_scalar_id(apr_pool_t *p, const json_t *obj,
                               const char *field, const char **id,
                               const char **err);

#endif /* ET_JSON_H */
