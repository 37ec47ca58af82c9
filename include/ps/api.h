/* SPDX-License-Identifier: MIT */
/* api: the Profile API (docs/http-api.md) as use cases, independent of HTTP. The server
 * parses the URL and the Authorization header into a ps_api_request; this module checks the
 * token and the rate limit, validates parameters and cursors, reads the profile through the
 * read model in ONE read transaction (deletions: one write transaction) and returns the HTTP
 * status and the JSON body. Every error body is {"error":{"code":…,"message":…}}. */
#ifndef PS_API_H
#define PS_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps/mem.h"
#include "ps/space.h"

typedef enum ps_api_route {
    PS_API_TRAITS = 0,
    PS_API_EXTERNAL_IDS,
    PS_API_EVENTS,
    PS_API_METADATA,
    PS_API_LINKS,
    PS_API_MERGES,     /* the profiles merged into it: ours, not Segment's (docs/http-api.md) */
    PS_API_PROFILES,   /* list */
    PS_API_DELETE_IDS, /* POST …/external_ids/delete */
    /* from here on, routes of the space itself (no collection): each runs its own
     * transactions */
    PS_API_REG_CREATE,    /* POST /v1/spaces/{space}/regulations */
    PS_API_REG_LIST,      /* GET /v1/spaces/{space}/regulations */
    PS_API_REG_GET,       /* GET /v1/spaces/{space}/regulations/{id} (the id in `ident`) */
    PS_API_CHANGES,       /* GET /v1/spaces/{space}/changes (docs/changes.md) */
    PS_API_FILTER_LIST,   /* GET /v1/spaces/{space}/filters (docs/filters.md) */
    PS_API_FILTER_CREATE, /* POST /v1/spaces/{space}/filters */
    PS_API_FILTER_UPDATE, /* PATCH /v1/spaces/{space}/filters/{name} (the name in `ident`) */
    PS_API_FILTER_DELETE, /* DELETE /v1/spaces/{space}/filters/{name} */
    PS_API_IMPORT_CREATE, /* POST /v1/spaces/{space}/imports (a CSV body, docs/import.md) */
    PS_API_IMPORT_GET,    /* GET /v1/spaces/{space}/imports/{id} (the id in `ident`) */
    PS_API__ROUTES
} ps_api_route;

/* Stable name of a route ("traits", ..., "profiles", "external_ids_delete"). */
const char *ps_api_route_name(ps_api_route r);
/* Whether the route needs an admin token: it changes the space, or (filters) shows how the
 * space is set up. */
bool ps_api_route_changes(ps_api_route r);

/* One query parameter, already percent-decoded and NUL-terminated. */
typedef struct ps_api_param {
    const char *name;
    const char *value;
    size_t value_len;
} ps_api_param;

struct ps_api_reply;

typedef struct ps_api_request {
    ps_api_route route;
    const char *space_name; /* from the path */
    const char *collection; /* from the path, validated here; NULL on regulation routes */
    const char *ident;      /* decoded path identifier; unused for PS_API_PROFILES */
    size_t ident_len;
    const ps_api_param *params;
    size_t param_count;
    const char *body; /* request body (deletions) */
    size_t body_len;
    const char *token; /* Basic auth username; NULL when the request had none */
    size_t token_len;
    int64_t now_ms;       /* the /events window is measured against this */
    const char *base_url; /* "scheme://host[/path]" for absolute cursor URLs; NULL: relative */
    bool recheck;         /* the transport asks again for a waiting request: not rate-limited */
    bool replicated;      /* the space applies a replicated stream (docs/replication.md) */
    /* Called once the token is accepted and before anything is read, with a snapshot taken
     * after it returns: the transport waits there for the writes the reader must see, so
     * that a request without a valid token never waits. False: it wrote the reply (a 503). */
    bool (*before_read)(void *ud, struct ps_api_reply *out);
    void *before_read_ud;
} ps_api_request;

typedef struct ps_api_reply {
    int status;              /* HTTP status */
    int64_t retry_after_s;   /* with 429 */
    uint64_t position;       /* replicated: the stream sequence a write reached (sent as
                              * X-Stream-Sequence); 0: none */
    uint64_t regulation_seq; /* a regulation created (PS_API_REG_CREATE): its sequence */
    bool import_queued;      /* PS_API_IMPORT_CREATE kept a file: the space's writer runs it */
    bool publish_regulation; /* replicated PS_API_REG_CREATE: `body` holds the regulation's
                              * stream record (ps_regulation_encode), for the transport to
                              * publish and answer */
    int64_t wait_ms;         /* PS_API_CHANGES found nothing new and the client will wait this
                              * long: the transport may ask again (recheck) until then, and
                              * send this reply when time is up */
    ps_buf body;             /* JSON; the caller initializes and clears it */
} ps_api_reply;

/* Answers `rq` for space `sp` (NULL when no such space exists: that is a 401, as for a
 * token of another space). Never fails: every outcome is a status and a body. */
void ps_api_serve(ps_space *sp, const ps_api_request *rq, ps_api_reply *out);

/* Replaces the reply with an error envelope. The message is printf-formatted. */
void ps_api_error(ps_api_reply *out, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
