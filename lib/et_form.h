/* Licensed under the Apache License, Version 2.0. */
/**
 * @file et_form.h
 * @brief application/x-www-form-urlencoded encoding of a JSON object in
 *        bracket notation, as PHP, Rails and Express (qs) decode it.
 *
 * Conventions (docs/wire-format.md):
 *  - nested object:  member[username]=dev1
 *  - array:          limits[0][period]=second   (indices always written)
 *  - string:         as is, percent-encoded (space as '+')
 *  - integer:       its JSON text (2)
 *  - real:          shortest text that reads back the same (2.5, 0.1,
 *                   1e+100), integral ones with ".0" (2.0)
 *  - true, false:    "true", "false"
 *  - null:           the key with an empty value (fax=)
 *  - empty object or array: omitted (no decoder can represent it)
 *  Keys and values are encoded with APR's apr_escape_urlencoded; the
 *  brackets themselves are written literally.
 */
#ifndef ET_FORM_H
#define ET_FORM_H

#include <apr_pools.h>
#include <jansson.h>

/** Encode object @a obj; the result is NUL-terminated and its length in *len. */
apr_status_t et_form_encode(apr_pool_t *p, const json_t *obj,
                            const char **out, apr_size_t *len);

#endif /* ET_FORM_H */
