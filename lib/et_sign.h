/* Licensed under the Apache License, Version 2.0. */
/**
 * @file et_sign.h
 * @brief Standard Webhooks signatures (webhook-id, webhook-timestamp,
 *        webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">)
 *        with OpenSSL's libcrypto.
 */
#ifndef ET_SIGN_H
#define ET_SIGN_H

#include <apr_pools.h>
#include <apr_tables.h>

/** One signing key, decoded from its "whsec_<base64>" text. */
typedef struct et_secret_t {
    const unsigned char *key;
    apr_size_t len;
} et_secret_t;

/**
 * Decode "whsec_<base64>" (the prefix is required; the key must be 16 to
 * 128 bytes). *err never quotes the secret.
 */
apr_status_t et_secret_parse(apr_pool_t *p, const char *text,
                             et_secret_t **out, const char **err);

/**
 * The webhook-signature value: "v1,<sig>" for each secret of @a secrets
 * (an array of et_secret_t *), separated by spaces, so that a receiver
 * holding either the old or the new key verifies during a rotation.
 */
const char *et_sign(apr_pool_t *p, const apr_array_header_t *secrets,
                    const char *id, apr_int64_t timestamp,
                    const char *body, apr_size_t body_len);

#endif /* ET_SIGN_H */
