/* Licensed under the Apache License, Version 2.0. */
/*
 * et_event.c: the Event Trigger vocabulary, names as they appear on the
 * wire (protocol.md) and in the directives.
 */
#include <string.h>

#include <apr_strings.h>

#include "et_event.h"

const char *et_object_name(et_object_e o)
{
    switch (o) {
    case ET_OBJ_MEMBER:
        return "member";
    case ET_OBJ_APPLICATION:
        return "application";
    case ET_OBJ_KEY:
        return "key";
    case ET_OBJ_PACKAGE_KEY:
        return "package_key";
    case ET_OBJ_NONE:
    default:
        return NULL;
    }
}

/* Non-zero if @a s is one of the names (as in "if (!et_object_parse(..))"),
 * 0 otherwise, with *o left alone. The names are the protocol's path
 * elements, so they are matched exactly. */
int et_object_parse(const char *s, et_object_e *o)
{
    static const struct {
        const char *name;
        et_object_e obj;
    } names[] = {
        { "member", ET_OBJ_MEMBER },
        { "application", ET_OBJ_APPLICATION },
        { "key", ET_OBJ_KEY },
        { "package_key", ET_OBJ_PACKAGE_KEY },
        { "off", ET_OBJ_NONE },
    };
    apr_size_t i;

    if (s == NULL) {
        return 0;
    }
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(s, names[i].name) == 0) {
            *o = names[i].obj;
            return 1;
        }
    }
    return 0;
}

const char *et_event_name(et_event_e e)
{
    switch (e) {
    case ET_EV_CREATE:
        return "post-create";
    case ET_EV_UPDATE:
        return "post-update";
    case ET_EV_DELETE:
        return "post-delete";
    default:
        return NULL;
    }
}

int et_event_parse(const char *s, et_event_e *e)
{
    static const et_event_e all[] = { ET_EV_CREATE, ET_EV_UPDATE,
                                      ET_EV_DELETE };
    apr_size_t i;

    for (i = 0; s && i < sizeof(all) / sizeof(all[0]); i++) {
        if (!strcmp(s, et_event_name(all[i]))) {
            *e = all[i];
            return 1;
        }
    }
    return 0;
}

const char *et_event_method(et_event_e e)
{
    switch (e) {
    case ET_EV_CREATE:
    case ET_EV_UPDATE:
        return "PUT";
    case ET_EV_DELETE:
        return "DELETE";
    default:
        return NULL;
    }
}

const char *et_format_content_type(et_format_e f)
{
    switch (f) {
    case ET_FMT_FORM:
        return "application/x-www-form-urlencoded";
    case ET_FMT_JSON:
    default:
        return "application/json";
    }
}
