/* SPDX-License-Identifier: MIT */
/* repl: the one module that talks to NATS JetStream (docs/replication.md). Each space has one
 * stream, PS_<space>, on subject ps.<space>, kept in files with the configured number of
 * replicas and a duplicate window keyed on the messageId. A node publishes the log values of
 * the messages it accepts and applies the whole stream, its own messages included, in stream
 * order. No NATS type crosses this interface. */
#ifndef PS_REPL_H
#define PS_REPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps/mem.h"
#include "ps/status.h"

/* What a stream record carries. */
typedef enum ps_repl_kind {
    PS_REPL_MESSAGES = 0,   /* a payload's messages: their log values (ps/msglog.h),
                             * without dictionary, framed (ps_prepared_stream_record) */
    PS_REPL_SETTINGS = 1,   /* the space's identity settings, a JSON document */
    PS_REPL_REGULATION = 2, /* a regulation request (ps/regulation.h), stamped */
} ps_repl_kind;

#define PS_REPL_MAX_REPLICAS 5
#define PS_REPL_DUP_WINDOW_S 600 /* JetStream's duplicate window on the messageId */
#define PS_REPL_ID_MAX 400       /* longest duplicate key: a messageId, 100 code points */

typedef struct ps_repl_opts {
    const char *urls; /* "nats://host:port[,nats://host:port...]" (a bare host:port is fine) */
    int replicas;     /* copies of each stream (1..PS_REPL_MAX_REPLICAS); 0: as many servers as
                       * `urls` names, at most 3 */
    int timeout_ms;   /* a publish waits this long for JetStream's acknowledgement (0: 5000) */
} ps_repl_opts;

typedef struct ps_repl ps_repl;

/* Checks `o` (PS_EINVAL with `why` when a URL or the replica count is wrong) and connects. The
 * connection retries in the background for as long as the servers are away, so a cluster that
 * is still starting is fine. */
ps_status ps_repl_connect(const ps_repl_opts *o, ps_repl **out, char *why, size_t why_len);
/* Closes the connection. NULL is a no-op. */
void ps_repl_close(ps_repl *r);
/* Whether the connection is up now. */
bool ps_repl_connected(ps_repl *r);
/* Releases the client library's threads at process exit. */
void ps_repl_shutdown(void);

/* What a stream is: `id` tells one stream from another of the same name made later (its
 * creation time), `last_seq` where it ends. */
typedef struct ps_repl_info {
    uint64_t id;
    uint64_t last_seq;
} ps_repl_info;

/* ---- publishing: one publisher per space, used by one thread at a time ---- */
typedef struct ps_repl_pub ps_repl_pub;
/* Opens a publisher to the space's stream, creating the stream when it is missing and
 * `create` allows (else PS_ENOTFOUND: a node whose store has applied records never makes a
 * new, empty stream in place of a lost one). */
ps_status ps_repl_pub_open(ps_repl *r, const char *space, bool create, ps_repl_pub **out);
/* Sends one record without waiting; `msg_id` (may be NULL) keys JetStream's duplicate window
 * (a retried request sends the same key, and the stream keeps one copy). */
ps_status ps_repl_pub_add(ps_repl_pub *p, ps_repl_kind kind, const char *msg_id, size_t id_len,
                          ps_slice data);
/* Waits for the acknowledgements of every record added since the last wait. PS_OK when each
 * is stored by the stream's quorum; *last_seq gets the highest stream sequence among them. On
 * a failure or a timeout, some may be stored and others not: the caller reports failure. */
ps_status ps_repl_pub_wait(ps_repl_pub *p, uint64_t *last_seq);
void ps_repl_pub_close(ps_repl_pub *p); /* NULL is a no-op */

/* ---- applying: the stream in order ---- */
typedef struct ps_repl_sub ps_repl_sub;
/* Reads the space's stream from sequence `from` (at least 1) on, in order; *info says which
 * stream it is. The stream is created when missing and `create` allows, else PS_ENOTFOUND.
 * PS_EIO while the cluster cannot be reached. */
ps_status ps_repl_sub_open(ps_repl *r, const char *space, uint64_t from, bool create,
                           ps_repl_info *info, ps_repl_sub **out, char *why, size_t why_len);

typedef struct ps_repl_msg {
    uint64_t seq;     /* the stream sequence */
    uint64_t pending; /* records after this one in the stream when it was delivered */
    ps_repl_kind kind;
    ps_slice data;
    void *handle; /* the library's message; ps_repl_msg_free() releases it */
} ps_repl_msg;

/* The next record. PS_ENOTFOUND when none came within `timeout_ms`; another error (the
 * subscription broke) means: close it and open a new one from the next sequence wanted. */
ps_status ps_repl_sub_next(ps_repl_sub *s, int timeout_ms, ps_repl_msg *m);
void ps_repl_msg_free(ps_repl_msg *m);
void ps_repl_sub_close(ps_repl_sub *s); /* NULL is a no-op */

/* Which stream the space has now, and where it ends; PS_ENOTFOUND when it has none. */
ps_status ps_repl_stream(ps_repl *r, const char *space, ps_repl_info *info);

#endif
