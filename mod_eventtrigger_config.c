/* Licensed under the Apache License, Version 2.0. */
/*
 * Directives, configuration merging and the startup checks.
 *
 * Merging follows httpd's rules (a virtual host inherits what it does not
 * set; a more specific <Location> wins) with one deliberate exception:
 * EventTriggerEndpoint is never inherited by a virtual host from the main
 * server, because a site's objects must not reach another site's receiver.
 */

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_main.h"

#include <apr_strings.h>
#include <apr_lib.h>

#include <unistd.h>

#include "mod_eventtrigger.h"
#include "et_json.h"
#include "et_url.h"
#include "et_retry.h"
#include "et_sign.h"

#define ET_CAPTURE_LIMIT_DEFAULT  (1024 * 1024)
#define ET_MAX_DEPTH_DEFAULT      32
#define ET_RESPONSE_KEEP          1024
#define ET_WORKERS_DEFAULT        8
#define ET_POLL_DEFAULT           apr_time_from_sec(1)
#define ET_LEASE_DEFAULT          apr_time_from_sec(60)
#define ET_CONNECT_TIMEOUT_DEFAULT apr_time_from_sec(5)
#define ET_TIMEOUT_DEFAULT        apr_time_from_sec(15)
#define ET_KEEP_DELIVERED_DEFAULT apr_time_from_sec(7 * 86400)
#define ET_KEEP_DEAD_DEFAULT      apr_time_from_sec(30 * 86400)
#define ET_CB_THRESHOLD_DEFAULT   5
#define ET_CB_MIN_PAUSE_DEFAULT   apr_time_from_sec(10)
#define ET_CB_MAX_PAUSE_DEFAULT   apr_time_from_sec(600)

et_srv_conf_t *et_srv_conf(server_rec *s)
{
    return ap_get_module_config(s->module_config, &eventtrigger_module);
}

void *et_create_srv_conf(apr_pool_t *p, server_rec *s)
{
    et_srv_conf_t *c = apr_pcalloc(p, sizeof(*c));

    c->capture_limit = -1;
    c->before_timeout = -1;
    c->before_concurrency = -1;
    c->max_depth = -1;
    c->workers = -1;
    c->poll = -1;
    c->lease = -1;
    c->keep_delivered = -1;
    c->keep_dead = -1;
    c->s = s;
    c->site.tls.verify = 1;
    return c;
}

void *et_merge_srv_conf(apr_pool_t *p, void *basev, void *addv)
{
    et_srv_conf_t *base = basev, *add = addv;
    et_srv_conf_t *c = apr_pmemdup(p, add, sizeof(*c));

    /* endpoint and site name: the virtual host's own, never the base's */
#define ET_INHERIT(flag, field) \
    if (!add->flag) { c->site.field = base->site.field; c->flag = base->flag; }
    ET_INHERIT(format_set, format);
    ET_INHERIT(user_agent_set, user_agent);
    ET_INHERIT(connect_timeout_set, connect_timeout);
    ET_INHERIT(timeout_set, timeout);
    if (!add->timeout_set) {
        c->timeout_where = base->timeout_where;
    }
    if (!add->tls_verify_set) {
        c->tls_verify_where = base->tls_verify_where;
    }
    ET_INHERIT(retry_set, retry);
    ET_INHERIT(secrets_set, secrets);
    ET_INHERIT(headers_set, headers);
    if (!add->headers_set) {
        c->expr_headers = base->expr_headers;
    }
    ET_INHERIT(tls_verify_set, tls.verify);
    ET_INHERIT(circuit_set, circuit);
    /* the URL and its credentials as one: a virtual host with a proxy of
     * its own never sends the main server's proxy password to it */
    ET_INHERIT(proxy_set, proxy);
#undef ET_INHERIT
    if (!add->ca_set) {
        c->site.tls.ca = base->site.tls.ca;
        c->site.tls.ca_len = base->site.tls.ca_len;
        c->ca_set = base->ca_set;
    }
    if (!add->cert_set) {
        c->site.tls.cert = base->site.tls.cert;
        c->site.tls.cert_len = base->site.tls.cert_len;
        c->site.tls.key = base->site.tls.key;
        c->site.tls.key_len = base->site.tls.key_len;
        c->cert_set = base->cert_set;
    }
    c->capture_limit = add->capture_limit >= 0 ? add->capture_limit
                                               : base->capture_limit;
    c->max_depth = add->max_depth >= 0 ? add->max_depth : base->max_depth;
    c->before_timeout = add->before_timeout >= 0 ? add->before_timeout
                                                 : base->before_timeout;
    c->before_concurrency = add->before_concurrency >= 0
                            ? add->before_concurrency
                            : base->before_concurrency;
    c->store_failure = add->store_failure ? add->store_failure
                                          : base->store_failure;
    return c;
}

void *et_create_dir_conf(apr_pool_t *p, char *dir)
{
    return apr_pcalloc(p, sizeof(et_dir_conf_t));
}

void *et_merge_dir_conf(apr_pool_t *p, void *basev, void *addv)
{
    et_dir_conf_t *base = basev, *add = addv;
    et_dir_conf_t *c = apr_pcalloc(p, sizeof(*c));

    c->object_set = add->object_set || base->object_set;
    c->object = add->object_set ? add->object : base->object;
    c->jsonrpc = add->object_set ? add->jsonrpc : base->jsonrpc;
    c->object_where = add->object_set ? add->object_where : base->object_where;
    c->id_field = add->id_field ? add->id_field : base->id_field;
    {
        int i;

        for (i = 0; i <= ET_OBJ_PACKAGE_KEY; i++) {
            c->id_fields[i] = add->id_fields[i] ? add->id_fields[i]
                                                : base->id_fields[i];
        }
    }
    c->object_ptr = add->object_ptr ? add->object_ptr : base->object_ptr;
    c->evmode = add->evmode != ET_EVMODE_UNSET ? add->evmode : base->evmode;
    c->before_set = add->before_set || base->before_set;
    c->before_mask = add->before_set ? add->before_mask : base->before_mask;
    c->before_failure = add->before_failure ? add->before_failure
                                            : base->before_failure;
    c->before_timeout = add->before_timeout ? add->before_timeout
                                            : base->before_timeout;
    return c;
}

/* "FILE:LINE" of the directive being read, for checks made at startup. */
static const char *directive_where(cmd_parms *cmd)
{
    return apr_psprintf(cmd->pool, "%s:%d", cmd->directive->filename,
                        cmd->directive->line_num);
}

/* "FILE:LINE" of a virtual host, or "the main server". */
static const char *server_where(apr_pool_t *p, const server_rec *s)
{
    return s->is_virtual && s->defn_name
           ? apr_psprintf(p, "%s:%d", s->defn_name, s->defn_line_number)
           : "the main server";
}

static const char *set_endpoint(cmd_parms *cmd, void *dc, const char *arg)
{
    et_srv_conf_t *c = et_srv_conf(cmd->server);
    const char *err = NULL;

    if (et_url_check_root(cmd->pool, arg, &err) != APR_SUCCESS) {
        return apr_psprintf(cmd->pool, "%s: %s (e.g. "
                            "https://hooks.example.com/masherycallbacks)",
                            cmd->cmd->name, err);
    }
    c->site.endpoint = arg;
    return NULL;
}

static const char *set_site_name(cmd_parms *cmd, void *dc, const char *arg)
{
    et_srv_conf_t *c = et_srv_conf(cmd->server);
    const char *p;

    for (p = arg; *p; p++) {
        if (!apr_isgraph(*p)) {
            return apr_psprintf(cmd->pool, "%s: a name without spaces or "
                                "control characters is required",
                                cmd->cmd->name);
        }
    }
    c->site.name = arg;
    return NULL;
}

static const char *set_format(cmd_parms *cmd, void *dc, const char *arg)
{
    et_srv_conf_t *c = et_srv_conf(cmd->server);

    if (!strcasecmp(arg, "json")) {
        c->site.format = ET_FMT_JSON;
    }
    else if (!strcasecmp(arg, "form")) {
        c->site.format = ET_FMT_FORM;
    }
    else {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a format; use json "
                            "or form", cmd->cmd->name, arg);
    }
    c->format_set = 1;
    return NULL;
}

static const char *main_server_only(cmd_parms *cmd)
{
    if (cmd->server->is_virtual) {
        return apr_psprintf(cmd->pool, "%s is only allowed in the main "
                            "server configuration, not in <VirtualHost>",
                            cmd->cmd->name);
    }
    return NULL;
}

static const char *set_spool(cmd_parms *cmd, void *dc, const char *arg)
{
    et_srv_conf_t *c = et_srv_conf(cmd->server);
    const char *err = main_server_only(cmd);
    const char *path;

    if (err) {
        return err;
    }
    c->spool_where = directive_where(cmd);
    if (!strcasecmp(arg, "off")) {
        c->spool = "";
        return NULL;
    }
    path = ap_server_root_relative(cmd->pool, arg);
    if (!path || !*arg) {
        return apr_psprintf(cmd->pool, "%s: invalid file path '%s' (a file "
                            "path, or off)", cmd->cmd->name, arg);
    }
    c->spool = apr_pstrcat(cmd->pool, "sqlite3:", path, NULL);
    return NULL;
}

static const char *set_store(cmd_parms *cmd, void *dc, const char *arg)
{
    et_srv_conf_t *c = et_srv_conf(cmd->server);
    const char *err = main_server_only(cmd);

    if (err) {
        return err;
    }
    c->store_where = directive_where(cmd);
    if (!strncmp(arg, "sqlite3:", 8) && arg[8]) {
        const char *path = ap_server_root_relative(cmd->pool, arg + 8);
        if (!path) {
            return apr_psprintf(cmd->pool, "%s: invalid file path '%s'",
                                cmd->cmd->name, arg + 8);
        }
        c->store = apr_pstrcat(cmd->pool, "sqlite3:", path, NULL);
    }
    else if (!strncmp(arg, "pgsql:", 6) && arg[6]) {
        c->store = arg;
    }
    else {
        return apr_psprintf(cmd->pool, "%s: use sqlite3:PATH or "
                            "pgsql:CONNINFO", cmd->cmd->name);
    }
    return NULL;
}

static const char *set_object(cmd_parms *cmd, void *dcv, const char *arg)
{
    et_dir_conf_t *dc = dcv;

    dc->jsonrpc = !strcasecmp(arg, "jsonrpc");
    if (dc->jsonrpc) {
        dc->object = ET_OBJ_NONE;
    }
    else if (!et_object_parse(arg, &dc->object)) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not an object; use "
                            "member, application, key, package_key, "
                            "jsonrpc or off", cmd->cmd->name, arg);
    }
    dc->object_set = 1;
    dc->object_where = directive_where(cmd);
    return NULL;
}

/* EventTriggerIdField [OBJECT=]NAME|POINTER ...: one per object where the
 * objects of one location name their ids differently (a JSON-RPC console:
 * members by username, keys by apikey). */
static const char *set_id_field(cmd_parms *cmd, void *dcv, const char *arg)
{
    et_dir_conf_t *dc = dcv;
    const char *err, *eq = strchr(arg, '=');
    const char **slot = &dc->id_field;

    if (eq && *arg != '/') {
        et_object_e o;
        char *oname = apr_pstrmemdup(cmd->temp_pool, arg, eq - arg);

        if (!et_object_parse(oname, &o) || o == ET_OBJ_NONE) {
            return apr_psprintf(cmd->pool, "%s: '%s' is not an object; use "
                                "member=, application=, key= or "
                                "package_key= before a field", cmd->cmd->name,
                                oname);
        }
        slot = &dc->id_fields[o];
        arg = eq + 1;
    }
    if (!*arg) {
        return apr_psprintf(cmd->pool, "%s: a field name is required",
                            cmd->cmd->name);
    }
    if (*arg == '/' && (err = et_json_pointer_check(arg)) != NULL) {
        return apr_psprintf(cmd->pool, "%s: '%s': %s", cmd->cmd->name, arg,
                            err);
    }
    if (!strcmp(arg, "/")) {
        /* the member named "" - surely not what was meant */
        return apr_psprintf(cmd->pool, "%s: '/' names a member with an "
                            "empty name; give the field's name or a pointer "
                            "such as /attributes/id", cmd->cmd->name);
    }
    *slot = arg;
    return NULL;
}

static const char *set_object_ptr(cmd_parms *cmd, void *dcv, const char *arg)
{
    et_dir_conf_t *dc = dcv;
    const char *err = et_json_pointer_check(arg);

    if (err != NULL) {
        return apr_psprintf(cmd->pool, "%s: '%s': %s (e.g. /data or "
                            "/member; \"\" for the whole answer)",
                            cmd->cmd->name, arg, err);
    }
    dc->object_ptr = arg;
    return NULL;
}

static const char *parse_duration(cmd_parms *cmd, const char *arg,
                                  apr_interval_time_t min,
                                  apr_interval_time_t *out);

/* EventTriggerBefore create|update|delete ...|off */
static const char *set_before(cmd_parms *cmd, void *dcv, const char *arg)
{
    et_dir_conf_t *dc = dcv;
    int bit;

    if (!strcasecmp(arg, "off")) {
        if (dc->before_set && dc->before_mask) {
            return apr_psprintf(cmd->pool, "%s: 'off' cannot be combined "
                                "with events", cmd->cmd->name);
        }
        dc->before_set = 1;
        dc->before_mask = 0;
        return NULL;
    }
    if (!strcasecmp(arg, "create")) {
        bit = 1 << ET_EV_CREATE;
    }
    else if (!strcasecmp(arg, "update")) {
        bit = 1 << ET_EV_UPDATE;
    }
    else if (!strcasecmp(arg, "delete")) {
        bit = 1 << ET_EV_DELETE;
    }
    else {
        return apr_psprintf(cmd->pool, "%s: '%s' is not an operation; use "
                            "create, update, delete or off", cmd->cmd->name,
                            arg);
    }
    if (dc->before_set && !dc->before_mask) {
        return apr_psprintf(cmd->pool, "%s: 'off' cannot be combined with "
                            "events", cmd->cmd->name);
    }
    dc->before_set = 1;
    dc->before_mask |= bit;
    return NULL;
}

static const char *set_before_failure(cmd_parms *cmd, void *dcv,
                                      const char *arg)
{
    et_dir_conf_t *dc = dcv;

    if (!strcasecmp(arg, "refuse")) {
        dc->before_failure = ET_BF_REFUSE;
    }
    else if (!strcasecmp(arg, "proceed")) {
        dc->before_failure = ET_BF_PROCEED;
    }
    else {
        return apr_psprintf(cmd->pool, "%s: '%s': use refuse or proceed",
                            cmd->cmd->name, arg);
    }
    return NULL;
}

/* Server config, virtual host and directory: where it is read decides. */
static const char *set_before_timeout(cmd_parms *cmd, void *dcv,
                                      const char *arg)
{
    apr_interval_time_t t;
    const char *err = parse_duration(cmd, arg, apr_time_from_msec(10), &t);

    if (err) {
        return err;
    }
    if (t > ET_BEFORE_TIMEOUT_MAX) {
        return apr_psprintf(cmd->pool, "%s: '%s' is longer than 30s: an "
                            "admin's request waits for the call, and a "
                            "slow endpoint would hold a worker that long",
                            cmd->cmd->name, arg);
    }
    if (cmd->path) {
        ((et_dir_conf_t *)dcv)->before_timeout = t;
    }
    else {
        et_srv_conf(cmd->server)->before_timeout = t;
    }
    return NULL;
}

static const char *set_before_concurrency(cmd_parms *cmd, void *dc,
                                          const char *arg)
{
    et_srv_conf_t *c = et_srv_conf(cmd->server);
    char *end;
    apr_int64_t n = apr_strtoi64(arg, &end, 10);

    if (*end || n < 1 || n > 10000) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a number from 1 to "
                            "10000", cmd->cmd->name, arg);
    }
    c->before_concurrency = (int)n;
    return NULL;
}

static const char *set_event_mode(cmd_parms *cmd, void *dcv, const char *arg)
{
    et_dir_conf_t *dc = dcv;

    if (!strcasecmp(arg, "auto")) {
        dc->evmode = ET_EVMODE_AUTO;
    }
    else if (!strcasecmp(arg, "create")) {
        dc->evmode = ET_EVMODE_CREATE;
    }
    else if (!strcasecmp(arg, "update")) {
        dc->evmode = ET_EVMODE_UPDATE;
    }
    else if (!strcasecmp(arg, "delete")) {
        dc->evmode = ET_EVMODE_DELETE;
    }
    else {
        return apr_psprintf(cmd->pool, "%s: '%s' is not an event; use "
                            "auto, create, update or delete",
                            cmd->cmd->name, arg);
    }
    return NULL;
}

static const char *set_retry(cmd_parms *cmd, void *dc, const char *args)
{
    et_srv_conf_t *c = et_srv_conf(cmd->server);
    et_retry_t *r;
    const char *err = NULL;

    if (et_retry_parse(cmd->pool, args, &r, &err) != APR_SUCCESS) {
        return apr_psprintf(cmd->pool, "%s: %s", cmd->cmd->name, err);
    }
    c->site.retry = r;
    c->retry_set = 1;
    return NULL;
}

static const char *parse_duration(cmd_parms *cmd, const char *arg,
                                  apr_interval_time_t min,
                                  apr_interval_time_t *out)
{
    if (et_duration_parse(arg, out) != APR_SUCCESS || *out < min) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a duration of at "
                            "least %" APR_TIME_T_FMT "ms (e.g. 500ms, 5s, "
                            "2m)", cmd->cmd->name, arg, apr_time_as_msec(min));
    }
    return NULL;
}

static const char *set_connect_timeout(cmd_parms *cmd, void *dc,
                                       const char *arg)
{
    et_srv_conf_t *c = et_srv_conf(cmd->server);

    c->connect_timeout_set = 1;
    return parse_duration(cmd, arg, apr_time_from_msec(10),
                          &c->site.connect_timeout);
}

static const char *set_timeout(cmd_parms *cmd, void *dc, const char *arg)
{
    et_srv_conf_t *c = et_srv_conf(cmd->server);

    c->timeout_set = 1;
    c->timeout_where = directive_where(cmd);
    return parse_duration(cmd, arg, apr_time_from_msec(10), &c->site.timeout);
}

static const char *set_user_agent(cmd_parms *cmd, void *dc, const char *arg)
{
    et_srv_conf_t *c = et_srv_conf(cmd->server);
    const char *p;

    for (p = arg; *p; p++) {
        if (apr_iscntrl(*p)) {
            return apr_psprintf(cmd->pool, "%s: control characters are not "
                                "allowed", cmd->cmd->name);
        }
    }
    c->site.user_agent = arg;
    c->user_agent_set = 1;
    return NULL;
}

static const char *set_capture_limit(cmd_parms *cmd, void *dc, const char *arg)
{
    et_srv_conf_t *c = et_srv_conf(cmd->server);
    char *end;
    apr_off_t v;

    if (apr_strtoff(&v, arg, &end, 10) != APR_SUCCESS || v < 1
        || v > APR_INT32_MAX) {
        goto bad;
    }
    if (*end == 'K' || *end == 'k') {
        v *= 1024;
        ++end;
    }
    else if (*end == 'M' || *end == 'm') {
        v *= 1024 * 1024;
        ++end;
    }
    if (*end || v > 64 * 1024 * 1024) {
        goto bad;
    }
    c->capture_limit = v;
    return NULL;
bad:
    return apr_psprintf(cmd->pool, "%s: '%s' is not a size between 1 and 64M "
                        "(bytes, or with K or M)", cmd->cmd->name, arg);
}

static const char *set_max_depth(cmd_parms *cmd, void *dc, const char *arg)
{
    et_srv_conf_t *c = et_srv_conf(cmd->server);
    char *end;
    apr_int64_t v = apr_strtoi64(arg, &end, 10);

    if (*end || end == arg || v < 1 || v > 64) {
        return apr_psprintf(cmd->pool, "%s: a depth between 1 and 64 is "
                            "required", cmd->cmd->name);
    }
    c->max_depth = (int)v;
    return NULL;
}

static const char *set_workers(cmd_parms *cmd, void *dc, const char *arg)
{
    et_srv_conf_t *c = et_srv_conf(cmd->server);
    const char *err = main_server_only(cmd);
    char *end;
    apr_int64_t v;

    if (err) {
        return err;
    }
    v = apr_strtoi64(arg, &end, 10);
    if (*end || end == arg || v < 1 || v > 256) {
        return apr_psprintf(cmd->pool, "%s: a number of calls at once "
                            "between 1 and 256 is required", cmd->cmd->name);
    }
    c->workers = (int)v;
    return NULL;
}

static const char *set_poll(cmd_parms *cmd, void *dc, const char *arg)
{
    et_srv_conf_t *c = et_srv_conf(cmd->server);
    const char *err = main_server_only(cmd);

    return err ? err : parse_duration(cmd, arg, apr_time_from_msec(10),
                                      &c->poll);
}

static const char *set_lease(cmd_parms *cmd, void *dc, const char *arg)
{
    et_srv_conf_t *c = et_srv_conf(cmd->server);
    const char *err = main_server_only(cmd);

    if (err) {
        return err;
    }
    c->lease_where = directive_where(cmd);
    return parse_duration(cmd, arg, apr_time_from_sec(1), &c->lease);
}

/*
 * Read a small file given to a directive, at startup (as root, before
 * httpd switches user): the dispatcher later needs no access to it. Files
 * that hold secrets must not be readable by everyone.
 */
static const char *read_conf_file(cmd_parms *cmd, const char *name,
                                  int secret, apr_size_t max,
                                  const char **data, apr_size_t *len)
{
    const char *path = ap_server_root_relative(cmd->pool, name);
    apr_finfo_t fi;
    apr_file_t *f;
    apr_status_t rv;
    char *buf;
    char errbuf[120];

    if (!path) {
        return apr_psprintf(cmd->pool, "%s: invalid file path '%s'",
                            cmd->cmd->name, name);
    }
    rv = apr_stat(&fi, path, APR_FINFO_SIZE | APR_FINFO_PROT | APR_FINFO_TYPE,
                  cmd->temp_pool);
    if (rv == APR_SUCCESS && fi.filetype != APR_REG) {
        return apr_psprintf(cmd->pool, "%s: %s is not a regular file",
                            cmd->cmd->name, path);
    }
    if (rv == APR_SUCCESS && fi.size > (apr_off_t)max) {
        return apr_psprintf(cmd->pool, "%s: %s is larger than %" APR_SIZE_T_FMT
                            " bytes", cmd->cmd->name, path, max);
    }
    if (rv == APR_SUCCESS && secret && (fi.protection & APR_FPROT_WREAD)) {
        return apr_psprintf(cmd->pool, "%s: %s holds a secret and is readable "
                            "by everyone; chmod o-r it", cmd->cmd->name, path);
    }
    if (rv == APR_SUCCESS) {
        rv = apr_file_open(&f, path, APR_FOPEN_READ, APR_OS_DEFAULT,
                           cmd->temp_pool);
    }
    if (rv != APR_SUCCESS) {
        return apr_psprintf(cmd->pool, "%s: cannot read %s: %s",
                            cmd->cmd->name, path,
                            apr_strerror(rv, errbuf, sizeof(errbuf)));
    }
    buf = apr_palloc(cmd->pool, (apr_size_t)fi.size + 1);
    rv = apr_file_read_full(f, buf, (apr_size_t)fi.size, len);
    apr_file_close(f);
    if (rv != APR_SUCCESS && rv != APR_EOF) {
        return apr_psprintf(cmd->pool, "%s: cannot read %s: %s",
                            cmd->cmd->name, path,
                            apr_strerror(rv, errbuf, sizeof(errbuf)));
    }
    buf[*len] = '\0';
    *data = buf;
    return NULL;
}

/* A value from "file:PATH" (first line, surrounding space trimmed) or inline. */
static const char *inline_or_file(cmd_parms *cmd, const char *arg,
                                  const char **value)
{
    const char *data, *err;
    apr_size_t len;
    char *v, *end;

    if (strncmp(arg, "file:", 5)) {
        *value = arg;
        return NULL;
    }
    if ((err = read_conf_file(cmd, arg + 5, 1, 64 * 1024, &data, &len))) {
        return err;
    }
    v = apr_pstrmemdup(cmd->pool, data, len);
    while (apr_isspace(*v)) {
        ++v;
    }
    end = v + strcspn(v, "\r\n");
    while (end > v && apr_isspace(end[-1])) {
        --end;
    }
    *end = '\0';
    *value = v;
    return NULL;
}

static const char *add_secret(cmd_parms *cmd, void *dc, const char *arg)
{
    et_srv_conf_t *c = et_srv_conf(cmd->server);
    et_secret_t *sec;
    const char *text, *err;

    if ((err = inline_or_file(cmd, arg, &text))) {
        return err;
    }
    if (et_secret_parse(cmd->pool, text, &sec, &err) != APR_SUCCESS) {
        /* never echo the value: it is a secret */
        return apr_psprintf(cmd->pool, "%s: %s", cmd->cmd->name, err);
    }
    if (!c->secrets_set) {
        c->site.secrets = apr_array_make(cmd->pool, 2, sizeof(et_secret_t *));
        c->secrets_set = 1;
    }
    APR_ARRAY_PUSH(c->site.secrets, et_secret_t *) = sec;
    return NULL;
}

static const char *add_header(cmd_parms *cmd, void *dc, const char *name,
                              const char *arg)
{
    static const char *const ours[] = {
        "Host", "Content-Type", "Content-Length", "Transfer-Encoding",
        "Connection", "Expect", "User-Agent", "Accept",
        "traceparent", "tracestate", NULL
    };
    et_srv_conf_t *c = et_srv_conf(cmd->server);
    const char *value, *err, *p;
    int i;

    if (!*name || name[strspn(name, "!#$%&'*+-.^_`|~0123456789"
                               "abcdefghijklmnopqrstuvwxyz"
                               "ABCDEFGHIJKLMNOPQRSTUVWXYZ")]) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a header name",
                            cmd->cmd->name, name);
    }
    for (i = 0; ours[i]; i++) {
        if (!strcasecmp(name, ours[i])) {
            return apr_psprintf(cmd->pool, "%s: %s is set by the module "
                                "(see EventTriggerUserAgent for User-Agent)",
                                cmd->cmd->name, ours[i]);
        }
    }
    if (!strncasecmp(name, "webhook-", 8)) {
        return apr_psprintf(cmd->pool, "%s: webhook-* headers are the "
                            "signature's (see EventTriggerSecret)",
                            cmd->cmd->name);
    }
    if (!strncmp(arg, "expr=", 5)) {
        et_expr_header_t *eh;

        if (!c->headers_set) {
            c->site.headers = apr_array_make(cmd->pool, 2,
                                             sizeof(const char *));
            c->headers_set = 1;
        }
        if (!c->expr_headers) {
            c->expr_headers = apr_array_make(cmd->pool, 2, sizeof(*eh));
        }
        eh = apr_array_push(c->expr_headers);
        eh->name = name;
        /* a string expression, as Header's expr= (httpd names the file
         * and line of a syntax error); what it reads of the request does
         * not vary the console's answer, which is sent already */
        eh->expr = ap_expr_parse_cmd(cmd, arg + 5, AP_EXPR_FLAG_STRING_RESULT
                                                   | AP_EXPR_FLAG_DONT_VARY,
                                     &err, NULL);
        if (err) {
            return apr_psprintf(cmd->pool, "%s %s: cannot parse the "
                                "expression '%s': %s", cmd->cmd->name, name,
                                arg + 5, err);
        }
        return NULL;
    }
    if ((err = inline_or_file(cmd, arg, &value))) {
        return err;
    }
    for (p = value; *p; p++) {
        if (apr_iscntrl(*p) && *p != '\t') {
            return apr_psprintf(cmd->pool, "%s %s: the value holds a control "
                                "character", cmd->cmd->name, name);
        }
    }
    if (!c->headers_set) {
        c->site.headers = apr_array_make(cmd->pool, 2, sizeof(const char *));
        c->headers_set = 1;
    }
    APR_ARRAY_PUSH(c->site.headers, const char *) =
        apr_pstrcat(cmd->pool, name, ": ", value, NULL);
    return NULL;
}

static const char *set_tls_verify(cmd_parms *cmd, void *dc, int on)
{
    et_srv_conf_t *c = et_srv_conf(cmd->server);

    c->site.tls.verify = on;
    c->tls_verify_set = 1;
    c->tls_verify_where = directive_where(cmd);
    return NULL;
}

static const char *set_ca_file(cmd_parms *cmd, void *dc, const char *arg)
{
    et_srv_conf_t *c = et_srv_conf(cmd->server);
    const char *err;

    err = read_conf_file(cmd, arg, 0, 16 * 1024 * 1024, &c->site.tls.ca,
                         &c->site.tls.ca_len);
    c->ca_set = 1;
    return err;
}

static const char *set_client_cert(cmd_parms *cmd, void *dc, const char *cert,
                                   const char *key)
{
    et_srv_conf_t *c = et_srv_conf(cmd->server);
    const char *err;

    /* a PEM file may hold both; then the key is read from it as well */
    err = read_conf_file(cmd, cert, key ? 0 : 1, 1024 * 1024,
                         &c->site.tls.cert, &c->site.tls.cert_len);
    if (!err) {
        err = read_conf_file(cmd, key ? key : cert, 1, 1024 * 1024,
                             &c->site.tls.key, &c->site.tls.key_len);
    }
    c->cert_set = 1;
    return err;
}

/*
 * EventTriggerProxy URL [credentials=file:PATH] | env | off. The
 * credentials are an argument of the same directive, not a directive of
 * their own, so that they are inherited and overridden with the URL they
 * belong to. They come from a file only: inline, they would show wherever
 * the configuration does.
 */
static const char *set_proxy(cmd_parms *cmd, void *dc, const char *arg,
                             const char *cred)
{
    et_srv_conf_t *c = et_srv_conf(cmd->server);
    et_proxy_t px;
    const char *err, *line;
    char *colon;

    memset(&px, 0, sizeof(px));
    if (!strcasecmp(arg, "off") || !strcasecmp(arg, "env")) {
        if (cred) {
            return apr_psprintf(cmd->pool, "%s %s takes no credentials",
                                cmd->cmd->name, arg);
        }
        px.mode = strcasecmp(arg, "off") ? ET_PROXY_ENV : ET_PROXY_OFF;
    }
    else {
        px.mode = ET_PROXY_URL;
        if (et_url_check_proxy(cmd->pool, arg, &px.url, &err)
            != APR_SUCCESS) {
            /* the URL is not repeated: it may hold a password */
            return apr_psprintf(cmd->pool, "%s: %s (use URL, e.g. "
                                "http://proxy.example.com:3128, env or off)",
                                cmd->cmd->name, err);
        }
    }
    if (cred) {
        static const char key[] = "credentials=";
        const char *file;

        if (strncmp(cred, key, sizeof(key) - 1)
            || strncmp(cred + sizeof(key) - 1, "file:", 5)
            || !cred[sizeof(key) - 1 + 5]) {
            return apr_psprintf(cmd->pool, "%s: the second argument is "
                                "credentials=file:PATH (a file holding "
                                "user:password)", cmd->cmd->name);
        }
        file = cred + sizeof(key) - 1;            /* "file:PATH" */
        /* the first line, of a file not readable by everyone */
        if ((err = inline_or_file(cmd, file, &line))) {
            return err;
        }
        colon = strchr(line, ':');
        if (!colon || colon == line) {
            /* never the file's content: it is a secret */
            return apr_psprintf(cmd->pool, "%s: %s does not hold "
                                "user:password on its first line",
                                cmd->cmd->name, file + 5);
        }
        px.user = apr_pstrmemdup(cmd->pool, line, colon - line);
        px.password = colon + 1;
    }
    c->site.proxy = px;
    c->proxy_set = 1;
    return NULL;
}

static const char *set_retention(cmd_parms *cmd, void *dc, const char *a1,
                                 const char *a2)
{
    et_srv_conf_t *c = et_srv_conf(cmd->server);
    const char *err = main_server_only(cmd);

    if (err) {
        return err;
    }
    if (et_duration_parse(a1, &c->keep_delivered) != APR_SUCCESS
        || (a2 && et_duration_parse(a2, &c->keep_dead) != APR_SUCCESS)) {
        return apr_psprintf(cmd->pool, "%s: DELIVERED-AGE [DEAD-AGE] as "
                            "durations (e.g. 7d 30d; 0 keeps them forever)",
                            cmd->cmd->name);
    }
    if (!a2) {
        c->keep_dead = c->keep_delivered
                       && c->keep_delivered < ET_KEEP_DEAD_DEFAULT
                       ? ET_KEEP_DEAD_DEFAULT : c->keep_delivered;
    }
    return NULL;
}

static const char *set_circuit(cmd_parms *cmd, void *dc, const char *args)
{
    et_srv_conf_t *c = et_srv_conf(cmd->server);
    et_circuit_conf_t cb;
    const char *w, *err;
    char *end;
    apr_int64_t n;

    cb.min_pause = ET_CB_MIN_PAUSE_DEFAULT;
    cb.max_pause = ET_CB_MAX_PAUSE_DEFAULT;
    w = ap_getword_conf(cmd->temp_pool, &args);
    if (!strcasecmp(w, "off")) {
        cb.threshold = 0;
    }
    else {
        n = apr_strtoi64(w, &end, 10);
        if (!*w || *end || n < 1 || n > 10000) {
            return apr_psprintf(cmd->pool, "%s: use off, or FAILURES "
                                "[MIN-PAUSE [MAX-PAUSE]] (e.g. 5 10s 10m)",
                                cmd->cmd->name);
        }
        cb.threshold = (int)n;
        if (*(w = ap_getword_conf(cmd->temp_pool, &args))
            && (err = parse_duration(cmd, w, apr_time_from_msec(100),
                                     &cb.min_pause))) {
            return err;
        }
        if (*(w = ap_getword_conf(cmd->temp_pool, &args))
            && (err = parse_duration(cmd, w, cb.min_pause, &cb.max_pause))) {
            return err;
        }
        if (cb.max_pause < cb.min_pause) {
            cb.max_pause = cb.min_pause;
        }
    }
    if (*args) {
        return apr_psprintf(cmd->pool, "%s: too many arguments",
                            cmd->cmd->name);
    }
    c->site.circuit = cb;
    c->circuit_set = 1;
    return NULL;
}

const command_rec et_cmds[] = {
    AP_INIT_TAKE1("EventTriggerEndpoint", set_endpoint, NULL, RSRC_CONF,
                  "The root URL of the site's Event Trigger API"),
    AP_INIT_TAKE1("EventTriggerSiteName", set_site_name, NULL, RSRC_CONF,
                  "The name events of this site are stored under"),
    AP_INIT_TAKE1("EventTriggerFormat", set_format, NULL, RSRC_CONF,
                  "The body's encoding: json or form"),
    AP_INIT_TAKE1("EventTriggerStore", set_store, NULL, RSRC_CONF,
                  "The outbox: sqlite3:PATH or pgsql:CONNINFO"),
    AP_INIT_TAKE1("EventTriggerStoreFailure", et_set_store_failure, NULL,
                  RSRC_CONF, "refuse (503 before the console) or accept a "
                  "write request whose event cannot be stored"),
    AP_INIT_TAKE1("EventTriggerSpool", set_spool, NULL, RSRC_CONF,
                  "A local SQLite file that holds events while a PostgreSQL "
                  "outbox cannot take them: PATH or off"),
    AP_INIT_TAKE1("EventTriggerStoreReserve", et_set_store_reserve, NULL,
                  RSRC_CONF, "Room kept beside an SQLite outbox for the "
                  "events of admitted requests"),
    AP_INIT_TAKE1("EventTrigger", set_object, NULL, ACCESS_CONF,
                  "What requests here create, update and delete: member, "
                  "application, key, package_key, jsonrpc or off"),
    AP_INIT_ITERATE("EventTriggerIdField", set_id_field, NULL, ACCESS_CONF,
                    "The field of the saved object that holds its id: a "
                    "name, or a JSON pointer relative to the object; "
                    "OBJECT=FIELD for one object only"),
    AP_INIT_TAKE1("EventTriggerObject", set_object_ptr, NULL, ACCESS_CONF,
                  "JSON pointer to the saved object inside the answer "
                  "(e.g. /data); default: the whole answer"),
    AP_INIT_ITERATE("EventTriggerBefore", set_before, NULL, ACCESS_CONF,
                    "Operations that wait for a before-save event: create, "
                    "update, delete, or off"),
    AP_INIT_TAKE1("EventTriggerBeforeFailure", set_before_failure, NULL,
                  ACCESS_CONF, "When the before-save endpoint fails: refuse "
                  "(503, the default) or proceed"),
    AP_INIT_TAKE1("EventTriggerBeforeTimeout", set_before_timeout, NULL,
                  RSRC_CONF | ACCESS_CONF, "The whole before-save call, "
                  "connect included (default 5s, at most 30s)"),
    AP_INIT_TAKE1("EventTriggerBeforeConcurrency", set_before_concurrency,
                  NULL, RSRC_CONF, "Before-save calls at once per child, "
                  "per site (default 16); beyond, the failure policy"),
    AP_INIT_TAKE1("EventTriggerEvent", set_event_mode, NULL, ACCESS_CONF,
                  "The event requests here make: auto (by method), "
                  "create, update or delete"),
    AP_INIT_RAW_ARGS("EventTriggerRetry", set_retry, NULL, RSRC_CONF,
                     "Delays before each attempt, e.g. 0 5s 5m 30m 2h"),
    AP_INIT_TAKE1("EventTriggerConnectTimeout", set_connect_timeout, NULL,
                  RSRC_CONF, "Time to connect to the receiver"),
    AP_INIT_TAKE1("EventTriggerTimeout", set_timeout, NULL, RSRC_CONF,
                  "Time for a whole call to the receiver"),
    AP_INIT_TAKE1("EventTriggerUserAgent", set_user_agent, NULL, RSRC_CONF,
                  "The User-Agent of the calls"),
    AP_INIT_TAKE1("EventTriggerCaptureLimit", set_capture_limit, NULL,
                  RSRC_CONF, "Largest response body captured"),
    AP_INIT_TAKE1("EventTriggerMaxDepth", set_max_depth, NULL, RSRC_CONF,
                  "Deepest JSON nesting accepted"),
    AP_INIT_TAKE1("EventTriggerWorkers", set_workers, NULL, RSRC_CONF,
                  "Calls made at once (1-256)"),
    AP_INIT_TAKE1("EventTriggerPollInterval", set_poll, NULL, RSRC_CONF,
                  "Longest time the dispatcher sleeps between looks"),
    AP_INIT_TAKE1("EventTriggerLease", set_lease, NULL, RSRC_CONF,
                  "How long a dispatcher holds an event it is delivering"),
    AP_INIT_TAKE1("EventTriggerSecret", add_secret, NULL, RSRC_CONF,
                  "A signing secret, whsec_... or file:PATH (repeat to "
                  "rotate)"),
    AP_INIT_TAKE2("EventTriggerHeader", add_header, NULL, RSRC_CONF,
                  "An extra request header: NAME VALUE, NAME file:PATH or "
                  "NAME expr=EXPRESSION (evaluated for each event)"),
    AP_INIT_FLAG("EventTriggerTLSVerify", set_tls_verify, NULL, RSRC_CONF,
                 "Verify the receiver's certificate (default on)"),
    AP_INIT_TAKE1("EventTriggerCAFile", set_ca_file, NULL, RSRC_CONF,
                  "PEM bundle of the CAs the receiver's certificate must "
                  "chain to (default: the system's)"),
    AP_INIT_RAW_ARGS("EventTriggerCircuitBreaker", set_circuit, NULL,
                     RSRC_CONF, "Pause an endpoint after this many "
                     "consecutive failures: N [MIN-PAUSE [MAX-PAUSE]] or off"),
    AP_INIT_TAKE12("EventTriggerRetention", set_retention, NULL, RSRC_CONF,
                   "How long delivered [and dead] events are kept (7d 30d)"),
    AP_INIT_TAKE12("EventTriggerProxy", set_proxy, NULL, RSRC_CONF,
                   "Forward proxy of the calls: URL [credentials=file:PATH], "
                   "env (the *_proxy variables) or off (default)"),
    AP_INIT_TAKE12("EventTriggerClientCert", set_client_cert, NULL, RSRC_CONF,
                   "PEM certificate [and key file] for mutual TLS"),
    { NULL }
};

/* The retry schedule every site without EventTriggerRetry gets. */
static const et_retry_t *default_retry(apr_pool_t *p)
{
    et_retry_t *r = NULL;
    const char *err;

    et_retry_parse(p, ET_RETRY_DEFAULT, &r, &err);
    return r;
}

static const char *default_site_name(apr_pool_t *p, server_rec *s)
{
    apr_port_t port = s->port;

    if (!port && s->addrs) {
        port = s->addrs->host_port;
    }
    if (!port) {
        return s->server_hostname ? s->server_hostname : "localhost";
    }
    return apr_psprintf(p, "%s:%u", s->server_hostname ? s->server_hostname
                                                       : "localhost",
                        (unsigned)port);
}

/*
 * <Location>/<Directory> sections that map events in a site that has no
 * endpoint send nothing: say so at startup (and in configtest). A virtual
 * host's section arrays start with the main server's, which are checked
 * with the main server only when there is nothing else.
 */
static void check_unsent_sections(server_rec *s, server_rec *vs,
                                  apr_pool_t *ptemp)
{
    core_server_config *main_core = ap_get_core_module_config(s->module_config);
    core_server_config *core = ap_get_core_module_config(vs->module_config);
    apr_array_header_t *arrs[2];
    int a, i;

    arrs[0] = core->sec_url;
    arrs[1] = core->sec_dir;
    for (a = 0; a < 2; a++) {
        apr_array_header_t *secs = arrs[a];
        int first = 0;

        if (!secs) {
            continue;
        }
        if (vs != s) {
            first = a == 0 ? main_core->sec_url->nelts
                           : main_core->sec_dir->nelts;
        }
        else if (s->next) {
            continue;
        }
        for (i = first; i < secs->nelts; i++) {
            ap_conf_vector_t *sec = APR_ARRAY_IDX(secs, i, ap_conf_vector_t *);
            et_dir_conf_t *dc = ap_get_module_config(sec, &eventtrigger_module);
            core_dir_config *cd = ap_get_core_module_config(sec);

            if (ET_DIR_MAPS(dc)) {
                ap_log_error(APLOG_MARK, APLOG_WARNING, 0, vs,
                             "ET00014: %s: <%s %s> maps %s events, but "
                             "this site (%s) has no EventTriggerEndpoint: "
                             "nothing is sent for it",
                             dc->object_where ? dc->object_where : "?",
                             a == 0 ? "Location" : "Directory",
                             cd && cd->d ? cd->d : "?",
                             dc->jsonrpc ? "JSON-RPC"
                                         : et_object_name(dc->object),
                             server_where(ptemp, vs));
            }
        }
    }
}

/* The outbox's directory must be there or creatable, and writable. */
static int check_store_dir(apr_pool_t *ptemp, server_rec *s, const char *store,
                           const char *where, const char *directive)
{
    char *dir;
    apr_finfo_t fi;
    apr_status_t rv;

    if (strncmp(store, "sqlite3:", 8)) {
        return OK;
    }
    dir = ap_make_dirstr_parent(ptemp, store + 8);
    /* the first ancestor that exists decides; a file in the way does not
     * count as missing */
    while ((rv = apr_stat(&fi, dir, APR_FINFO_TYPE, ptemp)) != APR_SUCCESS
           && APR_STATUS_IS_ENOENT(rv)) {
        char *up = ap_make_dirstr_parent(ptemp,
                                         apr_pstrndup(ptemp, dir,
                                                      strlen(dir) - 1));
        if (!*up || !strcmp(up, dir)) {
            break;
        }
        dir = up;
    }
    if (rv != APR_SUCCESS || fi.filetype != APR_DIR
        || access(dir, W_OK | X_OK) != 0) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s,
                     "ET00015: %s: %s %s: %s is not a writable directory; "
                     "the file cannot be created there",
                     where ? where : apr_pstrcat(ptemp, "the default ",
                                                 directive, NULL),
                     directive, store + 8, dir);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return OK;
}

int et_check_config(apr_pool_t *pconf, apr_pool_t *ptemp, server_rec *s)
{
    et_srv_conf_t *mc = et_srv_conf(s);
    const et_retry_t *retry = default_retry(pconf);
    apr_hash_t *names = apr_hash_make(ptemp);
    server_rec *vs;
    int sends = 0;

    /* main-server-only settings */
    if (!mc->store) {
        mc->store = apr_pstrcat(pconf, "sqlite3:",
                                ap_server_root_relative(pconf,
                                                        ET_DEFAULT_STORE_FILE),
                                NULL);
    }
    if (mc->workers < 0) {
        mc->workers = ET_WORKERS_DEFAULT;
    }
    if (mc->poll < 0) {
        mc->poll = ET_POLL_DEFAULT;
    }
    if (mc->lease < 0) {
        mc->lease = ET_LEASE_DEFAULT;
    }
    if (mc->keep_delivered < 0) {
        mc->keep_delivered = ET_KEEP_DELIVERED_DEFAULT;
    }
    if (mc->keep_dead < 0) {
        mc->keep_dead = ET_KEEP_DEAD_DEFAULT;
    }

    for (vs = s; vs; vs = vs->next) {
        et_srv_conf_t *c = et_srv_conf(vs);

        if (!c->site.endpoint) {
            check_unsent_sections(s, vs, ptemp);
        }
        if (!c->retry_set) {
            c->site.retry = retry;
        }
        if (!c->connect_timeout_set) {
            c->site.connect_timeout = ET_CONNECT_TIMEOUT_DEFAULT;
        }
        if (!c->timeout_set) {
            c->site.timeout = ET_TIMEOUT_DEFAULT;
        }
        if (!c->circuit_set) {
            c->site.circuit.threshold = ET_CB_THRESHOLD_DEFAULT;
            c->site.circuit.min_pause = ET_CB_MIN_PAUSE_DEFAULT;
            c->site.circuit.max_pause = ET_CB_MAX_PAUSE_DEFAULT;
        }
        if (!c->user_agent_set) {
            c->site.user_agent = ET_USER_AGENT_DEFAULT;
        }
        if (c->capture_limit < 0) {
            c->capture_limit = ET_CAPTURE_LIMIT_DEFAULT;
        }
        if (c->max_depth < 0) {
            c->max_depth = ET_MAX_DEPTH_DEFAULT;
        }
        if (!c->store_failure) {
            c->store_failure = ET_STORE_FAILURE_REFUSE;
        }
        c->site.response_keep = ET_RESPONSE_KEEP;
        if (!c->site.name) {
            c->site.name = default_site_name(pconf, vs);
        }
        if (c->site.timeout <= c->site.connect_timeout) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, vs,
                         "ET00010: %s: EventTriggerTimeout is not longer "
                         "than EventTriggerConnectTimeout (site %s, %s)",
                         c->timeout_where ? c->timeout_where
                                          : server_where(ptemp, vs),
                         c->site.name, server_where(ptemp, vs));
        }
        if (c->site.endpoint && !c->site.tls.verify) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, vs,
                         "ET00013: %s: EventTriggerTLSVerify off: site %s "
                         "sends its objects without checking who receives "
                         "them (%s)", c->tls_verify_where
                                      ? c->tls_verify_where
                                      : server_where(ptemp, vs),
                         c->site.name, server_where(ptemp, vs));
        }
        if (c->site.endpoint) {
            server_rec *other = apr_hash_get(names, c->site.name,
                                             APR_HASH_KEY_STRING);
            if (other) {
                ap_log_error(APLOG_MARK, APLOG_EMERG, 0, vs,
                             "ET00011: %s:%d: two sites with an "
                             "EventTriggerEndpoint share the name '%s' (the "
                             "other is at %s:%d); give one an "
                             "EventTriggerSiteName",
                             vs->defn_name ? vs->defn_name : "(main)",
                             vs->defn_line_number, c->site.name,
                             other->defn_name ? other->defn_name : "(main)",
                             other->defn_line_number);
                return HTTP_INTERNAL_SERVER_ERROR;
            }
            apr_hash_set(names, c->site.name, APR_HASH_KEY_STRING, vs);
            sends = 1;
        }
        if (c->site.endpoint && mc->lease <= c->site.timeout) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, 0, vs,
                         "ET00012: %s: EventTriggerLease (%" APR_TIME_T_FMT
                         "s) must be longer than EventTriggerTimeout (%"
                         APR_TIME_T_FMT "s, %s) of site %s, or a slow call "
                         "could be made twice at once",
                         mc->lease_where ? mc->lease_where
                                         : "the default EventTriggerLease",
                         apr_time_sec(mc->lease),
                         apr_time_sec(c->site.timeout),
                         c->timeout_where ? c->timeout_where : "default",
                         c->site.name);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    }
    if (!sends) {
        return OK;
    }
    if (check_store_dir(ptemp, s, mc->store, mc->store_where,
                        "EventTriggerStore") != OK) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    /* the local spool: for a PostgreSQL outbox only */
    if (strncmp(mc->store, "pgsql:", 6)) {
        if (mc->spool && *mc->spool) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                         "ET00108: %s: EventTriggerSpool applies to a "
                         "PostgreSQL outbox only; an SQLite outbox is "
                         "local already (ignored)", mc->spool_where);
        }
        mc->spool = NULL;
        return OK;
    }
    if (!mc->spool) {
        mc->spool = apr_pstrcat(pconf, "sqlite3:",
                                ap_server_root_relative(pconf,
                                                        ET_DEFAULT_SPOOL_FILE),
                                NULL);
    }
    else if (!*mc->spool) {
        mc->spool = NULL;             /* off */
        return OK;
    }
    return check_store_dir(ptemp, s, mc->spool, mc->spool_where,
                           "EventTriggerSpool");
}

const et_site_t *et_site_lookup(void *baton, const char *name)
{
    server_rec *s = baton, *vs;

    for (vs = s; vs; vs = vs->next) {
        et_srv_conf_t *c = et_srv_conf(vs);
        if (c->site.name && !strcmp(c->site.name, name)) {
            return &c->site;
        }
    }
    /* the site was removed from the configuration: its events still go to
     * the URL they were stored with, with the main server's settings */
    return &et_srv_conf(s)->site;
}
