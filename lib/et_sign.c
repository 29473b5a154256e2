/* Licensed under the Apache License, Version 2.0. */
/*
 * Standard Webhooks signing. The key and the signed text never reach a log:
 * error strings describe, they do not quote.
 */

#include <string.h>

#include <apr_base64.h>
#include <apr_lib.h>
#include <apr_strings.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/crypto.h>

#include "et_sign.h"

#define WHSEC "whsec_"

static apr_status_t wipe(void *data)
{
    et_secret_t *s = data;

    OPENSSL_cleanse((void *)s->key, s->len);
    return APR_SUCCESS;
}

apr_status_t et_secret_parse(apr_pool_t *p, const char *text,
                             et_secret_t **out, const char **err)
{
    const char *b64;
    apr_size_t i, n;
    unsigned char *key;
    et_secret_t *s;
    int len;

    if (strncmp(text, WHSEC, sizeof(WHSEC) - 1)) {
        *err = "a secret starts with whsec_ followed by base64";
        return APR_EINVAL;
    }
    b64 = text + sizeof(WHSEC) - 1;
    n = strlen(b64);
    /* apr_base64_decode stops quietly at a bad character: check first */
    for (i = 0; i < n; i++) {
        if (!apr_isalnum(b64[i]) && b64[i] != '+' && b64[i] != '/'
            && !(b64[i] == '=' && i >= n - 2)) {
            *err = "the secret after whsec_ is not base64";
            return APR_EINVAL;
        }
    }
    if (n == 0 || n % 4 != 0) {
        *err = "the secret after whsec_ is not base64 (bad length)";
        return APR_EINVAL;
    }
    key = apr_palloc(p, apr_base64_decode_len(b64));
    len = apr_base64_decode_binary(key, b64);
    if (len < 16 || len > 128) {
        *err = "a secret must hold 16 to 128 bytes";
        return APR_EINVAL;
    }
    s = apr_palloc(p, sizeof(*s));
    s->key = key;
    s->len = (apr_size_t)len;
    apr_pool_cleanup_register(p, s, wipe, apr_pool_cleanup_null);
    *out = s;
    return APR_SUCCESS;
}

const char *et_sign(apr_pool_t *p, const apr_array_header_t *secrets,
                    const char *id, apr_int64_t timestamp,
                    const char *body, apr_size_t body_len)
{
    const char *prefix = apr_psprintf(p, "%s.%" APR_INT64_T_FMT ".", id,
                                      timestamp);
    apr_size_t plen = strlen(prefix);
    unsigned char *msg = apr_palloc(p, plen + body_len);
    apr_array_header_t *sigs = apr_array_make(p, secrets->nelts,
                                              sizeof(const char *));
    int i;

    memcpy(msg, prefix, plen);
    if (body_len) {
        memcpy(msg + plen, body, body_len);
    }
    for (i = 0; i < secrets->nelts; i++) {
        const et_secret_t *s = APR_ARRAY_IDX(secrets, i, const et_secret_t *);
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int maclen = 0;
        char *b64;

        if (!HMAC(EVP_sha256(), s->key, (int)s->len, msg, plen + body_len,
                  mac, &maclen)) {
            continue;
        }
        b64 = apr_palloc(p, apr_base64_encode_len((int)maclen));
        apr_base64_encode_binary(b64, mac, (int)maclen);
        APR_ARRAY_PUSH(sigs, const char *) = apr_pstrcat(p, "v1,", b64, NULL);
    }
    return apr_array_pstrcat(p, sigs, ' ');
}
