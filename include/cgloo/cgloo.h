/*
 * cgloo: collective communication over plain networks, with a C ABI.
 *
 * Conventions used throughout this header:
 * - Every fallible function returns an int status: CGLOO_OK (0) or a negative CGLOO_E* code.
 *   cgloo_strerror() names the code; cgloo_context_last_error() gives the detail for calls that
 *   take a context, cgloo_last_error() for those that make stores, devices and contexts.
 * - Out-parameters come last. Nothing is written to an out-parameter when a call fails.
 * - Timeouts are in milliseconds. A timeout of 0 means "the default": the context's default
 *   timeout for calls that take a context, CGLOO_DEFAULT_TIMEOUT_MS otherwise. There is no
 *   infinite wait.
 * - Memory the library hands out (store values) is released with cgloo_free().
 * - The library never prints, aborts or exits because of anything outside it; it logs through
 *   the sink set with cgloo_log_set_sink() (silent by default).
 * - There is no global state beyond the log settings: any number of stores, devices and
 *   contexts may live in one process and be used from many threads.
 */
#ifndef CGLOO_CGLOO_H
#define CGLOO_CGLOO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define CGLOO_API __attribute__((visibility("default")))
#else
#define CGLOO_API
#endif

#define CGLOO_VERSION_MAJOR 0
#define CGLOO_VERSION_MINOR 1
#define CGLOO_VERSION_PATCH 0
#define CGLOO_VERSION_STRING "0.1.0"
/* One integer that orders versions: major * 10000 + minor * 100 + patch. */
#define CGLOO_VERSION                                                                              \
    (CGLOO_VERSION_MAJOR * 10000 + CGLOO_VERSION_MINOR * 100 + CGLOO_VERSION_PATCH)

/* The default timeout for calls that take no context (store operations). */
#define CGLOO_DEFAULT_TIMEOUT_MS 30000

/* cgloo_version returns CGLOO_VERSION of the library actually linked. Never blocks. */
CGLOO_API int cgloo_version(void);
/* cgloo_version_string returns "major.minor.patch" of the linked library (static storage). */
CGLOO_API const char *cgloo_version_string(void);

/* ---------------------------------------------------------------------------------------------
 * Status codes. One list generates the enum and the strings (src/core/status.c).
 */
#define CGLOO_STATUS_MAP(X)                                                                        \
    X(OK, 0, "success")                                                                            \
    X(EINVAL, -1, "invalid argument")                                                              \
    X(ENOMEM, -2, "out of memory")                                                                 \
    X(ETIMEDOUT, -3, "timed out")                                                                  \
    X(EPEER, -4, "peer failed or closed the connection")                                           \
    X(EPROTO, -5, "protocol violation")                                                            \
    X(EABORTED, -6, "aborted")                                                                     \
    X(ENOTFOUND, -7, "not found")                                                                  \
    X(EIO, -8, "input/output error")                                                               \
    X(ETRUNC, -9, "message larger than the receive buffer")                                        \
    X(EADDR, -10, "address error")                                                                 \
    X(ECONNREFUSED, -11, "connection refused")                                                     \
    X(ESTORE, -12, "store error")                                                                  \
    X(ENOTSUP, -13, "not supported")                                                               \
    X(EBUSY, -14, "resource busy")                                                                 \
    X(ESTATE, -15, "operation not valid in the current state")                                     \
    X(EINTR, -16, "interrupted")

typedef enum cgloo_status {
#define CGLOO_STATUS_ENUM_(name, value, text) CGLOO_##name = value,
    CGLOO_STATUS_MAP(CGLOO_STATUS_ENUM_)
#undef CGLOO_STATUS_ENUM_
} cgloo_status;

/* cgloo_strerror returns a static sentence for a status code (an unknown code gets one too). */
CGLOO_API const char *cgloo_strerror(int status);
/* cgloo_status_name returns the code's name without prefix, e.g. "ETIMEDOUT". */
CGLOO_API const char *cgloo_status_name(int status);

/* A buffer of CGLOO_ERROR_MAX bytes holds any error detail the library gives. */
#define CGLOO_ERROR_MAX 1024

/* cgloo_last_error copies into buf the detail of the calling thread's latest failed call among
 * those that make or connect things, before (or without) a context to keep it in:
 * cgloo_store_file_create, cgloo_store_tcp_connect, cgloo_store_open, cgloo_store_server_start,
 * cgloo_device_tcp_create, cgloo_context_create, cgloo_context_connect and
 * cgloo_context_create_from_env; and returns that call's status. Each of these calls clears it
 * when it starts, so right after one fails it explains that failure (which variable is missing,
 * which address was chosen and why, what the system said), and after one succeeds it reads
 * CGLOO_OK and "". Other calls leave it alone. Per thread: threads never see each other's.
 * Never blocks. The detail is cut to len - 1 bytes (buf may be NULL when len is 0). */
CGLOO_API int cgloo_last_error(char *buf, size_t len);

/* cgloo_secret_supported returns 1 when the library was built with OpenSSL's libcrypto, so
 * that a job secret (cgloo_context_attr.secret, CGLOO_SECRET, CGLOO_SECRET_FILE) can be used,
 * else 0 (setting a secret then fails with ENOTSUP). Never blocks. */
CGLOO_API int cgloo_secret_supported(void);

/* cgloo_free releases memory the library handed to the caller. NULL is allowed. */
CGLOO_API void cgloo_free(void *ptr);

/* ---------------------------------------------------------------------------------------------
 * Data types and reduction operations (used by the collectives). Elements are in the machine's
 * byte order. New dtypes are appended before CGLOO_DTYPE_COUNT: the values are part of the ABI.
 */
typedef enum cgloo_dtype {
    CGLOO_INT8,
    CGLOO_UINT8,
    CGLOO_INT32,
    CGLOO_UINT32,
    CGLOO_INT64,
    CGLOO_UINT64,
    CGLOO_FLOAT16,
    CGLOO_BFLOAT16,
    CGLOO_FLOAT32,
    CGLOO_FLOAT64,
    CGLOO_BOOL, /* one byte: 0 is false, any other value true */
    CGLOO_INT16,
    CGLOO_UINT16,
    CGLOO_COMPLEX64,  /* two float32, real then imaginary: C's float _Complex */
    CGLOO_COMPLEX128, /* two float64, real then imaginary: C's double _Complex */
    CGLOO_DTYPE_COUNT
} cgloo_dtype;

typedef enum cgloo_op {
    CGLOO_SUM,
    CGLOO_PRODUCT,
    CGLOO_MIN,
    CGLOO_MAX,
    CGLOO_BAND,
    CGLOO_BOR,
    CGLOO_BXOR,
    CGLOO_OP_COUNT
} cgloo_op;

/* cgloo_dtype_size returns the element size in bytes, or 0 for an invalid dtype. */
CGLOO_API size_t cgloo_dtype_size(cgloo_dtype dtype);
/* cgloo_dtype_name returns "float32" and so on, or NULL for an invalid dtype. */
CGLOO_API const char *cgloo_dtype_name(cgloo_dtype dtype);
/* cgloo_op_name returns "sum" and so on, or NULL for an invalid op. */
CGLOO_API const char *cgloo_op_name(cgloo_op op);

/* ---------------------------------------------------------------------------------------------
 * Logging. Silent by default. The level starts from CGLOO_LOG_LEVEL (error, warn, info, debug,
 * trace) when the first context, store or device is created, and can be changed at any time.
 */
typedef enum cgloo_log_level {
    CGLOO_LOG_OFF = 0,
    CGLOO_LOG_ERROR,
    CGLOO_LOG_WARN,
    CGLOO_LOG_INFO,
    CGLOO_LOG_DEBUG,
    CGLOO_LOG_TRACE
} cgloo_log_level;

/* A log sink receives one formatted line (no trailing newline). It may be called from any
 * thread, concurrently; it must not call back into cgloo. */
typedef void (*cgloo_log_sink)(cgloo_log_level level, const char *line, void *user);

/* cgloo_log_set_level sets the process-wide level. Never blocks. */
CGLOO_API void cgloo_log_set_level(cgloo_log_level level);
/* cgloo_log_set_sink replaces the sink; NULL restores the default (stderr). */
CGLOO_API void cgloo_log_set_sink(cgloo_log_sink sink, void *user);

/* ---------------------------------------------------------------------------------------------
 * Stores: the key/value medium the ranks meet through. Keys are NUL-terminated strings of
 * 1 to CGLOO_STORE_KEY_MAX bytes; values are byte strings of up to CGLOO_STORE_VALUE_MAX bytes.
 * A store handle may be used from several threads at once.
 */
#define CGLOO_STORE_KEY_MAX 1024
#define CGLOO_STORE_VALUE_MAX (64u * 1024 * 1024)
/* The most keys one cgloo_store_wait, _check or _multi_get takes; more is EINVAL, refused
 * before any key is read (a count past the caller's array would otherwise be read as keys). */
#define CGLOO_STORE_KEYS_MAX 16384

typedef struct cgloo_store cgloo_store;

/* cgloo_store_hash_create makes an in-process store (for ranks that are threads of one process).
 * Errors: ENOMEM. */
CGLOO_API int cgloo_store_hash_create(cgloo_store **out);

/* cgloo_store_file_create makes a store kept in a directory shared by the ranks (a local or
 * network file system). The directory is created if missing. Keys are encoded into safe file
 * names, writes are atomic (write then rename), waits poll so NFS works. `run_id` (may be NULL,
 * then CGLOO_RUN_ID from the environment, else none) scopes every key to one run so that keys
 * left by an earlier run with another id are never read. Errors: EINVAL, EIO, ENOMEM. */
CGLOO_API int cgloo_store_file_create(const char *dir, const char *run_id, cgloo_store **out);

/* cgloo_store_prefix_create wraps `inner` so that every key gets "<prefix>/" in front. The
 * wrapper does not own `inner`, which must outlive it. Errors: EINVAL, ENOMEM. */
CGLOO_API int cgloo_store_prefix_create(cgloo_store *inner, const char *prefix, cgloo_store **out);

/* cgloo_store_tcp_connect connects to a TCP store server at host:port (IPv4, IPv6 or a name),
 * retrying refused connections until timeout_ms passes. With CGLOO_TLS_CERT, CGLOO_TLS_KEY and
 * CGLOO_TLS_CA set, every connection is TLS 1.3 with mutual certificates (and with
 * CGLOO_TLS_VERIFY_HOST=1 the server's certificate must name host). Errors (detail in
 * cgloo_last_error): EADDR, ECONNREFUSED, ETIMEDOUT, EPROTO (not a cgloo store; a TLS handshake
 * that failed), EINVAL (a TLS file), ENOTSUP (TLS without OpenSSL in the build), ENOMEM. */
CGLOO_API int cgloo_store_tcp_connect(const char *host, int port, int timeout_ms,
                                      cgloo_store **out);
/* cgloo_store_tcp_connect_auth is cgloo_store_tcp_connect proving a job secret to the server
 * (and checking the server's proof) before any request: secret NULL takes CGLOO_SECRET or
 * CGLOO_SECRET_FILE, as cgloo_store_tcp_connect also does; none set: no authentication.
 * Errors: those of cgloo_store_tcp_connect; EPROTO when the server and this process do not
 * share the secret (the detail says which side lacks it; it never quotes the secret), EINVAL
 * (a bad secret), ENOTSUP (built without OpenSSL). */
CGLOO_API int cgloo_store_tcp_connect_auth(const char *host, int port, const char *secret,
                                           int timeout_ms, cgloo_store **out);

/* Options of a Redis store; zero means default everywhere. The strings are copied. */
typedef struct cgloo_redis_attr {
    /* A host name, an IPv4 or an IPv6 address (default "127.0.0.1"). */
    const char *host;
    /* The server's port (default 6379). */
    int port;
    /* An ACL user (Redis 6 and later), sent as AUTH user password; NULL: AUTH password. */
    const char *user;
    /* NULL or "": no AUTH. */
    const char *password;
    /* The database to SELECT (default 0). */
    int db;
    /* Scopes every key to one run, as the file store does: NULL means CGLOO_RUN_ID from the
     * environment, and an empty id means none. At most 256 bytes. */
    const char *run_id;
    /* Nonzero: cgloo_store_destroy deletes the keys set or added through this handle. */
    int cleanup;
} cgloo_redis_attr;

/* cgloo_store_redis_connect makes a store kept in a Redis server (6.2 or later; not Redis
 * Cluster), reached with hiredis. It connects, retrying refused connections until timeout_ms
 * passes, authenticates, selects the database and pings the server before it returns. attr may
 * be NULL. Each key lives under "cgloo:<length of the run id>:<run id>:k:"; get, wait and
 * multi_get block in the server (BLMOVE on a list that every set and add of the key refills)
 * rather than poll it. Every call is bounded: a call that does not wait by
 * CGLOO_DEFAULT_TIMEOUT_MS, a waiting one by its timeout (plus at most a second while the
 * server's own answer to the timeout travels back). A handle keeps a few connections, so
 * threads sharing it do not wait for each other; a broken connection is dropped and the next
 * call dials again, once, failing with EIO if the server is gone. add fails with ESTORE where
 * the sum would overflow 64 bits (Redis refuses it; other stores wrap). cgloo_store_last_error
 * gives the server's own words for a failed call. Errors: ENOTSUP (cgloo was built without
 * hiredis: install libhiredis-dev and rebuild), EINVAL, ECONNREFUSED, ETIMEDOUT, EADDR (an
 * unknown host), ESTORE (the server refused: a wrong password, no such database), EIO,
 * ENOMEM. */
CGLOO_API int cgloo_store_redis_connect(const cgloo_redis_attr *attr, int timeout_ms,
                                        cgloo_store **out);

/* cgloo_store_torch_connect connects, as a client, to a PyTorch TCPStore server at host:port
 * (what torchrun's agent serves at MASTER_ADDR:MASTER_PORT), retrying refused connections until
 * timeout_ms passes. It finds which of PyTorch's protocols the server speaks (up to 2.1, or the
 * later one that starts with a validation and answers pings) on the first connection. Keys are
 * used as given: wrap the store in a prefix store to keep out of PyTorch's own keys. Blocks.
 * Errors: EADDR, ECONNREFUSED, ETIMEDOUT, ENOMEM, EPROTO (no protocol fits). */
CGLOO_API int cgloo_store_torch_connect(const char *host, int port, int timeout_ms,
                                        cgloo_store **out);

/* cgloo_store_open makes a store from a URL: "tcp://host:port", "torch://host:port" (a PyTorch
 * TCPStore), "file:///path/to/dir", "hash:" (a fresh in-process store) or
 * "redis://[[user]:password@]host:port[/db][?cleanup=1]" (user and password may be %-encoded;
 * cleanup=1 sets cgloo_redis_attr.cleanup). Blocks up to timeout_ms while connecting. Errors:
 * EINVAL for an unknown scheme or a malformed URL, and those of the matching create or connect
 * call; the detail is in cgloo_last_error. */
CGLOO_API int cgloo_store_open(const char *url, int timeout_ms, cgloo_store **out);

/* cgloo_store_open_detail is cgloo_store_open that, when it fails, also writes a sentence saying
 * why into detail (detail_len bytes, always NUL-terminated; detail may be NULL): the URL without
 * its password, and the cause, for a Redis server in its own words (a wrong password, a refused
 * connection); the empty string on success. */
CGLOO_API int cgloo_store_open_detail(const char *url, int timeout_ms, char *detail,
                                      size_t detail_len, cgloo_store **out);

/* cgloo_store_last_error copies into buf (len bytes, NUL-terminated) the detail of the latest
 * failed call on this handle: the server, the operation and the server's own words, never a
 * password. Stores that keep no detail (hash, file, tcp, custom; a prefix store passes on its
 * inner store's) give "". Never blocks.
 * Thread-safe; with several threads failing at once, one of their details is kept.
 * Errors: EINVAL. */
CGLOO_API int cgloo_store_last_error(cgloo_store *store, char *buf, size_t len);

/* Caller-supplied store callbacks, so that bindings can plug in any key/value service. Each
 * returns a cgloo status. get and wait must honour timeout_ms (never 0 here: the library
 * resolves the default first). get returns a value allocated with malloc(); the library frees
 * it. `add` adds delta to the integer stored under key (absent means 0, stored as decimal
 * text) and returns the new value. check, del and destroy may be NULL. */
typedef struct cgloo_store_callbacks {
    int (*set)(void *user, const char *key, const void *value, size_t len);
    int (*get)(void *user, const char *key, int timeout_ms, void **value, size_t *len);
    int (*wait)(void *user, const char *const *keys, size_t nkeys, int timeout_ms);
    int (*add)(void *user, const char *key, int64_t delta, int64_t *result);
    int (*check)(void *user, const char *const *keys, size_t nkeys, int *all_present);
    int (*del)(void *user, const char *key);
    void (*destroy)(void *user);
} cgloo_store_callbacks;

/* cgloo_store_custom_create wraps caller callbacks (copied) and `user` into a store. destroy, if
 * given, is called once by cgloo_store_destroy. Errors: EINVAL (set/get/wait/add missing). */
CGLOO_API int cgloo_store_custom_create(const cgloo_store_callbacks *callbacks, void *user,
                                        cgloo_store **out);

/* cgloo_store_destroy releases the store (closes connections, frees memory). NULL is allowed. */
CGLOO_API void cgloo_store_destroy(cgloo_store *store);

/* cgloo_store_set stores a copy of value under key, replacing any older value. May block on the
 * network. Errors: EINVAL, EIO, ESTORE, ETIMEDOUT. */
CGLOO_API int cgloo_store_set(cgloo_store *store, const char *key, const void *value, size_t len);

/* cgloo_store_get waits up to timeout_ms for key to exist, then returns a copy of its value in
 * *value (release with cgloo_free; a NUL byte follows the value so text can be used directly)
 * and its length in *len. Errors: ETIMEDOUT, EINVAL, EIO, ESTORE. */
CGLOO_API int cgloo_store_get(cgloo_store *store, const char *key, int timeout_ms, void **value,
                              size_t *len);

/* cgloo_store_wait waits up to timeout_ms until every one of keys exists. Errors: ETIMEDOUT. */
CGLOO_API int cgloo_store_wait(cgloo_store *store, const char *const *keys, size_t nkeys,
                               int timeout_ms);

/* cgloo_store_check sets *all_present to 1 if every key exists now, else 0. Never waits. */
CGLOO_API int cgloo_store_check(cgloo_store *store, const char *const *keys, size_t nkeys,
                                int *all_present);

/* cgloo_store_add atomically adds delta to the counter under key (absent counts as 0) and gives
 * the new value. Errors: ESTORE if the key holds something that is not a counter. */
CGLOO_API int cgloo_store_add(cgloo_store *store, const char *key, int64_t delta, int64_t *result);

/* cgloo_store_delete removes key; deleting an absent key succeeds. */
CGLOO_API int cgloo_store_delete(cgloo_store *store, const char *key);

/* cgloo_store_multi_get waits for all keys, then fills values[i] and lens[i] (each released with
 * cgloo_free). On failure nothing is returned. */
CGLOO_API int cgloo_store_multi_get(cgloo_store *store, const char *const *keys, size_t nkeys,
                                    int timeout_ms, void **values, size_t *lens);

/* A TCP store server. It runs on its own thread until stopped. */
typedef struct cgloo_store_server cgloo_store_server;

/* cgloo_store_server_start listens on host:port (host NULL means all interfaces of the loopback
 * only: "127.0.0.1"; port 0 picks a free one) and serves in a background thread. With
 * CGLOO_TLS_CERT, CGLOO_TLS_KEY and CGLOO_TLS_CA set, every connection must be TLS 1.3 with a
 * client certificate the CA signed (cgloo_tls_attr); others are closed.
 * Errors: EADDR, ENOMEM, EIO; EINVAL (a TLS file), ENOTSUP (TLS without OpenSSL in the build). */
CGLOO_API int cgloo_store_server_start(const char *host, int port, cgloo_store_server **out);
/* cgloo_store_server_start_auth is cgloo_store_server_start with a job secret: every client
 * must prove it (a challenge-response MAC at connect) before any request is served; others are
 * dropped while the server keeps serving. secret NULL: CGLOO_SECRET or CGLOO_SECRET_FILE, as
 * cgloo_store_server_start also does; none set: no authentication. Errors: those of
 * cgloo_store_server_start, EINVAL (a bad secret), ENOTSUP (built without OpenSSL). */
CGLOO_API int cgloo_store_server_start_auth(const char *host, int port, const char *secret,
                                            cgloo_store_server **out);
/* cgloo_store_server_port returns the port the server listens on. */
CGLOO_API int cgloo_store_server_port(const cgloo_store_server *server);
/* cgloo_store_server_stop stops the thread, closes every connection and frees the server.
 * Clients blocked on it get EIO. NULL is allowed. */
CGLOO_API void cgloo_store_server_stop(cgloo_store_server *server);

/* ---------------------------------------------------------------------------------------------
 * Devices: one network endpoint (a listening socket and the address peers reach it at).
 */
typedef struct cgloo_device cgloo_device;

/* TCP device attributes; zero means default everywhere. Each setting left unset falls back to
 * its environment variable, named in brackets.
 *
 * How the address is chosen: iface if set, else hostname if set, else the address the peers
 * most likely reach: the local address that the route to store_host leaves from (the peers
 * reach the store, so they share its network; a UDP connect finds it without sending
 * anything), unless that is loopback (the store is on this host); else the first non-loopback
 * address the host's name resolves to; else loopback. The choice and its reason are logged at
 * INFO (CGLOO_LOG_LEVEL=info). */
/* TLS for a TCP device's connections: TLS 1.3 only, both sides present a certificate that must
 * chain to `ca`. A device with TLS uses it on every connection it makes or accepts; a peer
 * without TLS, or with a certificate from another CA, cannot connect (the handshake fails and
 * the error names why). Needs a build with OpenSSL (CGLOO_WITH_OPENSSL); otherwise asking for
 * TLS fails with ENOTSUP. The strings are file names (PEM), read when the device is made. */
typedef struct cgloo_tls_attr {
    const char *cert; /* this host's certificate, or a chain beginning with it [CGLOO_TLS_CERT] */
    const char *key;  /* its private key [CGLOO_TLS_KEY] */
    const char *ca;   /* the CA certificates a peer's certificate must chain to [CGLOO_TLS_CA] */
    /* Nonzero: the peer's certificate must also name the host (IP address or DNS name) of the
     * address it published (subjectAltName) [CGLOO_TLS_VERIFY_HOST=1]. */
    int verify_host;
} cgloo_tls_attr;

typedef struct cgloo_tcp_attr {
    /* An IP address or host name to bind to and publish [CGLOO_HOSTNAME]. */
    const char *hostname;
    /* Which of this host's addresses to use [CGLOO_IFACE]: a comma list of interface names
     * ("eth0"; "eth*" for every name so begun), IP addresses and subnets ("10.1.0.0/16",
     * "fd00::/8"); a '^' before the first entry makes every entry an exclusion ("^lo,docker0").
     * Only interfaces that are up count. Among the addresses allowed, the one the route to
     * store_host leaves from wins, else the first entry's (IPv4 first). */
    const char *iface;
    /* Port range to listen on; 0..0 means an ephemeral port. port_max 0 means port_min only
     * [CGLOO_PORT: "PORT" or "LOW-HIGH"]. */
    int port_min;
    int port_max;
    /* 4 or 6 to force an address family; 0 takes either, IPv4 first, so that hosts with and
     * without IPv6 agree. */
    int family;
    /* The host (name or IP) of the store the ranks meet through, which tells the default choice
     * where the peers are [the host of CGLOO_STORE when that is a URL with a host, such as
     * tcp://HOST:PORT]. cgloo_context_create_from_env sets it from CGLOO_STORE. */
    const char *store_host;
    /* The address peers are told to dial, where they see this host under another address than
     * the bound one (NAT, containers with published ports): "HOST", "HOST:PORT" or
     * "[IPv6]:PORT"; without a port, the bound port [CGLOO_ADVERTISE_ADDR]. It is published in
     * the rendezvous instead of the bound address. */
    const char *advertise;
    /* TLS on every connection of the device (see cgloo_tls_attr), or NULL: TLS when the
     * CGLOO_TLS_CERT, CGLOO_TLS_KEY and CGLOO_TLS_CA variables are set (all three, else EINVAL).
     * Copied when the device is made. */
    const cgloo_tls_attr *tls;
    /* How contexts connecting through this device reach peers on their own host, where the
     * context's own attribute (cgloo_context_attr.transport) does not say: "auto", "shm" or
     * "tcp", as there; NULL: CGLOO_TRANSPORT, else "auto". Anything else is EINVAL at create.
     * Precedence: the context's attribute, then the device's, then the variable. */
    const char *transport;
} cgloo_tcp_attr;

/* cgloo_device_tcp_create binds and listens on the chosen address. attr may be NULL. Blocks in
 * the resolver. Errors (detail in cgloo_last_error: the setting, what this host has): EINVAL (a
 * malformed setting; a TLS file missing, unreadable or not matching), EADDR (no such interface,
 * subnet or name; no free port), ENOTSUP (TLS asked for in a build without OpenSSL), EIO,
 * ENOMEM. */
CGLOO_API int cgloo_device_tcp_create(const cgloo_tcp_attr *attr, cgloo_device **out);
/* cgloo_device_address writes "host:port" (IPv6 as "[addr]:port") into buf. */
CGLOO_API int cgloo_device_address(const cgloo_device *device, char *buf, size_t len);
/* cgloo_device_destroy closes the listening socket. Every context using the device must be
 * destroyed first, except sub-contexts (cgloo_context_split), which hold their device: it is
 * closed when the last of them is destroyed. NULL is allowed. */
CGLOO_API void cgloo_device_destroy(cgloo_device *device);

/* ---------------------------------------------------------------------------------------------
 * Contexts: one communicator of `size` ranks.
 */
typedef struct cgloo_context cgloo_context;

typedef struct cgloo_context_attr {
    /* Default timeout of every blocking call on the context (default 30000, CGLOO_TIMEOUT_MS). */
    int timeout_ms;
    /* Name that scopes the store keys and the wire identity of this communicator; ranks of one
     * communicator must agree on it; two communicators sharing a store and a device must
     * differ (default "cgloo"). Copied. */
    const char *name;
    /* Nonzero: start the context's progress thread when it connects, so that large
     * point-to-point transfers move while the caller computes before any non-blocking
     * collective starts it (CGLOO_PROGRESS_THREAD=1 for contexts made from the environment).
     * Zero: it starts with the first non-blocking collective. */
    int progress_thread;
    /* Check mode (docs/ARCHITECTURE.md, "Diagnostics"). Positive: before every collective the
     * ranks exchange a fingerprint of the call (collective, count, dtype, op, root, algorithm,
     * call number per caller tag) and a disagreement fails the call on every rank with
     * CGLOO_EINVAL, the detail naming the ranks and fields ("check: ..."), before any of the
     * collective's messages flow, so the context stays usable. A rank that does not come
     * makes the others time out naming it. Negative: off. Zero: CGLOO_CHECK=1 turns it on.
     * Costs one exchange per call (docs/BENCHMARKS.md, "Check mode and the flight recorder"). */
    int check;
    /* Flight recorder: the number of recent operations the context remembers for
     * cgloo_context_dump and for the log on a timeout. Positive: that many (at most 65536).
     * Negative: none. Zero: CGLOO_FLIGHT_RECORDER, else 64. */
    int flight_recorder;
    /* A signal number (e.g. SIGUSR2) on which the library writes every opted-in context's
     * flight recorder to stderr, or to the file CGLOO_DUMP_FILE names, with async-signal-safe
     * calls only. Zero: CGLOO_DUMP_SIGNAL (a number or a name such as SIGUSR2), else none: the
     * library installs no handler unless asked. The handler replaces the signal's disposition
     * for the whole process from cgloo_context_create on; it stays installed after the
     * context is destroyed (it then writes nothing for it). */
    int dump_signal;
    /* The job secret every connection of the context proves with a challenge-response MAC
     * (docs/ARCHITECTURE.md, "Authentication"): text of 1..1024 bytes, shared by every rank.
     * NULL: CGLOO_SECRET, else the file CGLOO_SECRET_FILE names (read at create; refused when
     * its group or others may read it), else none: connections are not authenticated. Copied;
     * never logged. Needs OpenSSL at build time (cgloo_secret_supported). */
    const char *secret;
    /* Lazy connections (docs/ARCHITECTURE.md, "Lazy connections"). Positive: connect reads
     * every peer's address (one store multi-get, as always) but opens no connection; a pair
     * connects when either side first sends to the other (a receive waits for the sender's
     * connection), through the same handshake (context id, ranks, nonces, job secret, TLS),
     * and the device accepts the context's peers for the context's whole life, while a thread
     * of the process drives the context (any blocking or waiting call, or its progress
     * thread). When both sides dial at once the higher rank's connection wins: one connection
     * per pair, and messages keep their order. A peer that refuses the connection (its process
     * is gone) fails with EPEER at once, and one whose host does not answer within half the
     * context's timeout fails with EPEER naming its rank and address; a peer that answers but
     * never acknowledges (a process that makes no call) leaves the calls that wait on it to
     * their timeouts. Costs a connection's set-up on each pair's first message
     * (docs/BENCHMARKS.md, "Lazy connections"). Negative: the full mesh at connect. Zero:
     * CGLOO_LAZY=1 turns it on. Sub-contexts (cgloo_context_split) inherit it. */
    int lazy;
    /* How the context reaches peers on its own host (one kernel: the same boot id, IPC and
     * network namespaces): "auto" (peers on this host through shared memory, the others over
     * TCP; a pair of one host that cannot share memory, because its ranks run as different
     * users or the shared segment cannot be made or mapped, goes over TCP, with a warning in
     * the log), "shm" (the same, but such a pair fails the connect on both ranks with ENOTSUP
     * saying why), "tcp" (every peer over the device's TCP). NULL: CGLOO_TRANSPORT, unset or ""
     * meaning "auto". Anything else is EINVAL at create. Ranks of one context must agree. Shared
     * memory checks that both ranks run as one user instead of proving the job secret, and does not
     * use TLS: "tcp" keeps both on every pair. A lazy context connects every pair on first use,
     * over either. Overrides the device's attribute (cgloo_tcp_attr.transport), which in turn
     * overrides CGLOO_TRANSPORT. Sub-contexts (cgloo_context_split) inherit the choice. */
    const char *transport;
} cgloo_context_attr;

/* cgloo_context_create makes an unconnected context for `rank` of `size`. attr may be NULL.
 * Errors (detail in cgloo_last_error): EINVAL (also a bad secret or CGLOO_SECRET_FILE), ENOMEM,
 * ENOTSUP (a secret is set and the library was built without OpenSSL). */
CGLOO_API int cgloo_context_create(int rank, int size, const cgloo_context_attr *attr,
                                   cgloo_context **out);

/* cgloo_context_connect connects the full mesh: publishes this rank's address in the store,
 * reads the peers', connects (higher ranks dial lower ranks; refused connections are retried
 * with backoff) and checks every peer's hello; once connected it removes its record, so that a
 * later run on the same store namespace never reads it (records of a run that died during its
 * rendezvous expire and are waited past). Blocks up to the context timeout for the peers'
 * records, then while connections keep coming: it fails when no new peer connected for the
 * timeout (a large mesh on few cores may take longer than the timeout in all). A size-1 context
 * needs neither store nor device (both may be NULL). The device must outlive the context. A
 * device whose address only its own host reaches (loopback) fails at once with EADDR when the
 * store's host (a TCP store's) or a peer's address is another host's: the detail names the
 * address, why it was chosen and the variables that change it. Errors: ETIMEDOUT,
 * ECONNREFUSED, EPROTO, EADDR, ESTORE, ESTATE (already connected), EBUSY (another run is in its
 * rendezvous under the same context name on this store right now), ENOTSUP (transport "shm"
 * where a pair of this host cannot share memory; "auto" takes TCP for it); the detail
 * (cgloo_context_last_error, and cgloo_last_error) names the peer rank and its address, and for
 * a connection that never came about, the local address dialled from. A lazy context
 * (cgloo_context_attr.lazy) stops after reading the peers' addresses: every pair connects on
 * first use (over TCP or shared memory), and the last rank to read the records removes them. */
CGLOO_API int cgloo_context_connect(cgloo_context *ctx, cgloo_store *store, cgloo_device *device);

/* What cgloo_launch_info_from_env found: which launcher started this process and where its
 * ranks meet. */
typedef struct cgloo_launch_info {
    const char *launcher;       /* "cgloo", "torchrun", "openmpi", "pmi" or "slurm" (static) */
    int rank, size;             /* in the job */
    int local_rank, local_size; /* on this host; -1 when the launcher does not say */
    char store[512];            /* URL of the store the ranks meet in; "" when size is 1 */
    char prefix[256];           /* the job's keys live under "<prefix>/" there; "" for none */
    /* serve_port > 0: this rank (rank 0) hosts the store itself, a TCP store server listening
     * on serve_host:serve_port, and connects to it like the others */
    char serve_host[256];
    int serve_port;
    int watch_store;  /* end this process when the store's server goes (CGLOO_WATCH_STORE=1) */
    char detail[256]; /* why the environment was refused; "" when it was not */
} cgloo_launch_info;

/* cgloo_launch_info_from_env reads the launcher's environment into *out. The first launcher
 * whose variables are set wins, in this order:
 *   cgloo     CGLOO_RANK, CGLOO_SIZE, CGLOO_LOCAL_RANK, CGLOO_LOCAL_SIZE (cgloo-run)
 *   torchrun  RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT
 *   openmpi   OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE (mpirun)
 *   pmi       PMI_RANK, PMI_SIZE (MPICH's mpiexec and other PMI launchers)
 *   slurm     SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID (srun)
 * The store is CGLOO_STORE when set. Otherwise: under torchrun with
 * TORCHELASTIC_USE_AGENT_STORE=True, the agent's PyTorch store (torch://MASTER_ADDR:MASTER_PORT,
 * keys under "cgloo/<run id>/attempt_<n>"); under torchrun otherwise, rank 0 serves a TCP store
 * at MASTER_PORT; under mpirun, PMI and Slurm, rank 0 serves one at CGLOO_STORE_PORT or a port
 * hashed from the job id into 20000-29999, on CGLOO_STORE_HOST, the first node of Slurm's node
 * list, or 127.0.0.1 when every rank is on one host. A store rank 0 serves listens on 127.0.0.1
 * when the job is on one host, else on every interface. Says in the log which launcher it
 * recognised (INFO for one rank; for more, cgloo_launch_store_open says it). Never blocks. Errors:
 * EINVAL, with out->detail naming the variable missing or malformed. */
CGLOO_API int cgloo_launch_info_from_env(cgloo_launch_info *out);

/* cgloo_launch_store_open opens the store info names: starts the TCP store server first when
 * this rank serves it, connects (retrying refused connections until timeout_ms), and applies
 * the key prefix. The store returned owns the server and the connection: destroying it stops
 * both. With info->watch_store (cgloo-run's CGLOO_WATCH_STORE=1), also starts, once per
 * process, a thread that ends the process (SIGTERM, then SIGKILL) when that store's server
 * closes: the launcher asked for its ranks to die with it. Logs the launcher and the store
 * (INFO). Blocks. Errors: EADDR (the port is
 * taken: another job, or set CGLOO_STORE_PORT), those of cgloo_store_open, EINVAL. */
CGLOO_API int cgloo_launch_store_open(const cgloo_launch_info *info, int timeout_ms,
                                      cgloo_store **out);

/* cgloo_context_create_from_env builds a connected context from the launcher's environment:
 * rank, size and store as cgloo_launch_info_from_env reads them (cgloo-run, torchrun, mpirun,
 * MPICH/PMI, Slurm), then optional CGLOO_TIMEOUT_MS, CGLOO_CONTEXT_NAME, and the device's
 * variables (see cgloo_tcp_attr: CGLOO_IFACE, CGLOO_HOSTNAME, CGLOO_ADVERTISE_ADDR,
 * CGLOO_PORT); the device learns the store's host, so that with none of those set it takes the
 * address the route to the store leaves from. With CGLOO_TLS_CERT, CGLOO_TLS_KEY and CGLOO_TLS_CA
 * set, the device and a tcp:// store use TLS (cgloo_tls_attr). The context owns the store (and the
 * store server, on the rank that serves it) and the device it made. Errors: EINVAL naming the bad
 * variable, EADDR, those of cgloo_store_open, cgloo_device_tcp_create and connect; the detail is in
 * cgloo_last_error (there is no context to ask). */
CGLOO_API int cgloo_context_create_from_env(cgloo_context **out);

/* The color of a rank that wants no sub-context from cgloo_context_split (MPI_UNDEFINED). */
#define CGLOO_UNDEFINED (-1)

/* cgloo_context_split makes a sub-context of a connected context, as MPI_Comm_split does: every
 * rank of `parent` calls it (a collective over the parent, counted as one of caller tag 0, in
 * the same order as the parent's other collectives); the ranks that give the same color
 * (>= 0) form one new context, ranked by key, ties broken by the parent rank; a rank that gives
 * a negative color (CGLOO_UNDEFINED) takes part and gets CGLOO_OK with *out set to NULL. The
 * ranks exchange what the child needs over the parent (two small allgathers) and the child
 * connects through the parent's device: no store is used. The child inherits the parent's
 * timeout, check mode, flight recorder size, progress-thread setting, job secret and interrupt
 * check; its name is "<parent name>.split<n>.<color>". Its messages use its own connections, so
 * its tags never meet the parent's or a sibling's; parent and children may be used in any order
 * and from different threads afterwards, and a child may be split again. The child is destroyed
 * with cgloo_context_destroy, before or after the parent: it holds the parent's device, which
 * stays open until the last context holding it is gone. Blocks up to three times the parent's
 * timeout (two exchanges and the child's connect). Not thread-safe against another collective of
 * tag 0 or another split on the same parent at the same time. Errors (nothing written to *out):
 * EINVAL (NULL parent or out), ESTATE (the parent is not connected), those of the parent's
 * allgather (ETIMEDOUT, EPEER naming the rank that died or stalled, EABORTED, EINTR), those of
 * connect (the detail names the child's peer), ENOMEM; every rank of the parent fails when one rank
 * could not make its child (the detail names it). After a failure the parent is, as after any
 * failed collective, unfit for further collectives. The detail is in
 * cgloo_context_last_error(parent) and cgloo_last_error. */
CGLOO_API int cgloo_context_split(cgloo_context *parent, int color, int key, cgloo_context **out);

/* cgloo_context_destroy closes every connection (peers see the close) and frees the context.
 * Pending requests must have been waited for or cancelled. Never blocks longer than a short
 * linger for the peers to read what was sent. NULL is allowed. */
CGLOO_API void cgloo_context_destroy(cgloo_context *ctx);

CGLOO_API int cgloo_context_rank(const cgloo_context *ctx);
CGLOO_API int cgloo_context_size(const cgloo_context *ctx);
CGLOO_API int cgloo_context_timeout(const cgloo_context *ctx);
/* cgloo_context_connections is how many of ctx's peers have a live connection now (its own
 * rank not counted): size - 1 once a full mesh is connected; in lazy mode (cgloo_context_attr.
 * lazy) the peers it has talked to, over TCP or shared memory. Takes the context lock; never blocks
 * longer. -1 when ctx is NULL. */
CGLOO_API int cgloo_context_connections(cgloo_context *ctx);
/* cgloo_context_set_timeout changes the default timeout (ms > 0). Errors: EINVAL. */
CGLOO_API int cgloo_context_set_timeout(cgloo_context *ctx, int timeout_ms);

/* cgloo_context_last_error copies the detail of the latest error on this context (operation,
 * rank, peer, address, system error text) into buf; "" if none. Returns the status of that
 * error. Thread-safe; with many threads failing at once, one of their details is kept. */
CGLOO_API int cgloo_context_last_error(cgloo_context *ctx, char *buf, size_t len);

/* cgloo_context_dump writes the context's flight recorder to f: one line per remembered
 * operation, oldest first (kind, algorithm, caller tag, count and dtype or bytes, root or peer,
 * start time and duration, state, and for one still running the step, peer and direction it is
 * waiting for). Does not block on the collectives: safe from any thread while other threads
 * run collectives on ctx (an entry being rewritten at that moment is shown as such). Errors:
 * EINVAL (ctx or f NULL), ENOTSUP (the recorder is off), EIO (writing f failed). */
CGLOO_API int cgloo_context_dump(cgloo_context *ctx, FILE *f);

/* cgloo_context_abort makes every waiter on the context return EABORTED now, and every later
 * blocking call too. Safe from any thread (not from a signal handler). */
CGLOO_API void cgloo_context_abort(cgloo_context *ctx);

/* An interrupt check: returns nonzero when the wait that called it should end. */
typedef int (*cgloo_interrupt_fn)(void *user);
/* How often a waiting thread calls the interrupt check, in ms. */
#define CGLOO_INTERRUPT_CHECK_MS 100

/* cgloo_context_set_interrupt_check installs fn (NULL removes it), for bindings whose
 * interpreter must see signals such as Ctrl-C while a call waits. A thread whose wait on the
 * context (cgloo_wait, a blocking call, a collective, connect) has lasted CGLOO_INTERRUPT_CHECK_MS
 * calls fn(user) then and every CGLOO_INTERRUPT_CHECK_MS after, without the context lock held;
 * a nonzero return ends the wait with CGLOO_EINTR, which behaves as a timeout: cgloo_wait leaves
 * the request pending, the blocking calls cancel it, and a collective or connect stops (the
 * context is then unfit for collectives, as after any failure). fn must not call cgloo with this
 * context. Install it before other threads use the context. Errors: EINVAL. */
CGLOO_API int cgloo_context_set_interrupt_check(cgloo_context *ctx, cgloo_interrupt_fn fn,
                                                void *user);

/* ---------------------------------------------------------------------------------------------
 * Point-to-point messages. A message is a byte range with a tag from 0 to CGLOO_TAG_MAX (tags
 * with the top bit set are the collectives'; the calls below refuse them with EINVAL). Receives
 * match sends in FIFO order per (source rank, tag). A receive may name one source or a set of
 * them. Sending to or receiving from one's own rank works.
 *
 * Requests and threads. A request (from cgloo_isend, cgloo_irecv, cgloo_irecv_any or a
 * non-blocking collective cgloo_i<name>) belongs to the caller that got it, and is freed by
 * the one call that ends it: cgloo_wait (whatever it returns, ETIMEDOUT and EINTR on a
 * point-to-point request excepted), cgloo_test when it reports completion, or cgloo_cancel.
 * After that call the handle is invalid.
 * - Posting (cgloo_isend, cgloo_irecv, cgloo_irecv_any, cgloo_i<name>), the blocking forms and
 *   the collectives may be called from any number of threads at once on one context.
 * - cgloo_wait, cgloo_test, cgloo_cancel and cgloo_request_id on one request: one thread at a
 *   time (the owner may hand the request to another thread, but two threads must never wait
 *   on, test or cancel the same request at once: the first to end it frees it). Different
 *   requests of one context may be waited on by different threads at once.
 * - cgloo_context_abort_request: any thread, at any time while the context lives, also while
 *   the owner waits on or tests that very request, and also after the request has ended (it
 *   names the request by a number, never by its pointer, so it never touches freed memory).
 * - cgloo_context_abort: any thread, at any time (not from a signal handler).
 */
#define CGLOO_TAG_MAX ((uint64_t)INT64_MAX)
typedef struct cgloo_request cgloo_request;

/* What a completed operation reports. */
typedef struct cgloo_completion {
    int source;   /* the sending rank (for sends: this rank) */
    size_t bytes; /* bytes received (for sends: bytes sent) */
} cgloo_completion;

/* cgloo_isend starts sending len bytes of buf to rank `dst` with `tag`. Never blocks. The buffer
 * must stay untouched until the request completes. Errors: EINVAL (a NULL buffer with a length,
 * a length above PTRDIFF_MAX, a rank out of range, a tag above CGLOO_TAG_MAX), ENOMEM, ESTATE (not
 * connected), EABORTED, or the status the connection to dst failed with earlier (EPEER, EPROTO,
 * ...). cgloo_irecv and cgloo_irecv_any fail the same way. */
CGLOO_API int cgloo_isend(cgloo_context *ctx, const void *buf, size_t len, int dst, uint64_t tag,
                          cgloo_request **req);

/* cgloo_irecv starts receiving up to len bytes from rank `src` with `tag` into buf. Never
 * blocks. A longer message completes the request with ETRUNC (its bytes are discarded). */
CGLOO_API int cgloo_irecv(cgloo_context *ctx, void *buf, size_t len, int src, uint64_t tag,
                          cgloo_request **req);

/* cgloo_irecv_any is cgloo_irecv from whichever of srcs[0..nsrcs) sends first (the earliest
 * arrival wins). A connection in the set that breaks (a crash, a reset, a protocol error, an
 * abort) fails the request at once; a member that closes its context normally only fails it
 * once no member of the set is left. */
CGLOO_API int cgloo_irecv_any(cgloo_context *ctx, void *buf, size_t len, const int *srcs,
                              size_t nsrcs, uint64_t tag, cgloo_request **req);

/* cgloo_wait, cgloo_test and cgloo_cancel take the requests of point-to-point calls and of
 * non-blocking collectives (see there for how those behave).
 * cgloo_wait drives progress until req completes or timeout_ms passes (0: the context's
 * default). On completion (success or error, EABORTED included) the request is freed and *done
 * (may be NULL) filled. On ETIMEDOUT the request stays
 * pending: wait again or cancel it (a completed request never
 * reports ETIMEDOUT: a connection that timed out in the kernel fails with EPEER). Errors: the
 * request's own status, ETIMEDOUT, EABORTED. When the request failed with EPEER or timed out,
 * the context's last error also names the other ranks whose connections broke ("the
 * connections to these ranks broke: rank 2 (...)"): a peer that closed its context after a
 * crash elsewhere is rarely the one to blame. */
CGLOO_API int cgloo_wait(cgloo_request *req, int timeout_ms, cgloo_completion *done);

/* cgloo_test drives progress once without blocking. If the request completed, frees it, sets
 * *completed to 1 and returns its status; else sets *completed to 0 and returns CGLOO_OK. */
CGLOO_API int cgloo_test(cgloo_request *req, int *completed, cgloo_completion *done);

/* cgloo_cancel withdraws a pending request and frees it. After it returns the library no longer
 * touches the request's buffer (bytes still arriving for it are discarded; a send half written
 * is finished from a private copy). NULL is allowed. */
CGLOO_API void cgloo_cancel(cgloo_request *req);

/* cgloo_request_id returns the request's number on its context (1, 2, ...: never 0, never
 * reused by that context), for cgloo_context_abort_request. Call it while the request is
 * still the caller's (before the call that ends it); 0 for NULL. Never blocks. */
CGLOO_API uint64_t cgloo_request_id(const cgloo_request *req);

/* cgloo_context_abort_request ends one pending request of ctx, the one cgloo_request_id
 * named id, without aborting the context (cgloo_context_abort ends them all). Any thread may
 * call it, typically while another thread waits on the request in cgloo_wait or polls it
 * with cgloo_test (as Gloo's abortWaitSend and abortWaitRecv do):
 * - The request completes at once with CGLOO_EABORTED: a waiter in cgloo_wait returns
 *   EABORTED within a poll (microseconds to a few ms), cgloo_test reports it completed with
 *   EABORTED, and a request nobody waits on yet gives EABORTED to its next wait or test. The
 *   owner still ends the request as usual (that call frees it); this call never frees it, and
 *   the context's last error names the request.
 * - A point-to-point request is withdrawn as cgloo_cancel withdraws it: once the waiter has
 *   seen EABORTED, the library no longer touches the buffer. A receive that no message had
 *   matched leaves its message to the next matching receive; bytes already arriving for it
 *   are dropped (the sender's send succeeds). A send the peer had not heard of is never sent;
 *   one it had heard of is finished from a private copy, so the peer still gets it whole.
 *   Other requests and the context are unaffected.
 * - A non-blocking collective still queued is withdrawn; a running one is stopped as
 *   cgloo_cancel stops it, and its request completes with EABORTED once the collective has
 *   returned (its buffers no longer touched). The other ranks run the collective without this
 *   one, so the context is then unfit for collectives (as after any failure); its
 *   point-to-point traffic keeps working.
 * Returns CGLOO_OK when it aborted the request; CGLOO_ENOTFOUND when there was nothing to
 * abort (the request had completed already, or was ended, or never was ctx's: harmless);
 * CGLOO_EINVAL for a NULL ctx or an id of 0. Never blocks (beyond the context's lock). */
CGLOO_API int cgloo_context_abort_request(cgloo_context *ctx, uint64_t id);

/* Blocking forms: post, then wait up to timeout_ms (0: the context default); on timeout the
 * operation is cancelled. A negative timeout is EINVAL, and nothing is posted. */
CGLOO_API int cgloo_send(cgloo_context *ctx, const void *buf, size_t len, int dst, uint64_t tag,
                         int timeout_ms);
CGLOO_API int cgloo_recv(cgloo_context *ctx, void *buf, size_t len, int src, uint64_t tag,
                         int timeout_ms, cgloo_completion *done);
CGLOO_API int cgloo_recv_any(cgloo_context *ctx, void *buf, size_t len, const int *srcs,
                             size_t nsrcs, uint64_t tag, int timeout_ms, cgloo_completion *done);

/* ---------------------------------------------------------------------------------------------
 * Collectives. Every rank of the context calls the same collectives in the same order with
 * matching arguments (count, dtype, op, root, tag, algorithm). Counts are in elements of dtype.
 * Buffers belong to the caller; the library keeps no pointer to them after the call returns.
 * Passing the same pointer as send and receive buffer works in place where the collective says
 * so. Every call blocks until done, or until its timeout, and returns:
 *   EINVAL  bad arguments (the detail says which), or an op the dtype lacks (a bitwise op on a
 *           floating-point dtype; min, max or a bitwise op on a complex one);
 *   ENOTSUP an algorithm name this collective does not have;
 *   ETIMEDOUT, EPEER, EPROTO, EABORTED  as for point-to-point, with the step and peer in the
 *   context's last error. After such a failure the context is not fit for further collectives
 *   (ranks may be at different steps): destroy it.
 * Revoke: a rank whose collective fails with EPEER or EPROTO tells its connected peers, and the
 * context's collectives are revoked on every rank that hears it: the collective a peer waits in
 * (even on a live rank) and every later one fail at once with EPEER, whose detail carries the
 * first rank's error (naming the rank that died). Point-to-point calls are not affected.
 */

/* A caller-supplied reduction: inout[i] = inout[i] (op) in[i] for i < count. It must be
 * associative and commutative, and must not call back into cgloo. */
typedef void (*cgloo_reduce_fn)(void *inout, const void *in, size_t count, cgloo_dtype dtype,
                                void *user);

/* Options of one collective call; NULL or all-zero means every default. */
typedef struct cgloo_coll_opts {
    int timeout_ms;            /* 0: the context default */
    uint64_t tag;              /* tells apart collectives running at once on one context, e.g.
                                  from several threads; below 2^47 */
    const char *algorithm;     /* NULL: chosen by size and world (or CGLOO_<COLL>_ALGORITHM,
                                  read at the context's first call of the collective); tags 0
                                  to 3 may use shared-memory algorithms ("shm") */
    int radix;                 /* bcube group size (default 2) */
    cgloo_reduce_fn reduce_fn; /* replaces op when set */
    void *reduce_user;
} cgloo_coll_opts;

/* cgloo_allreduce: recvbuf[i] = sendbuf[i] reduced over all ranks, on every rank. In place
 * when sendbuf == recvbuf. Algorithms: "ring", "halving_doubling", "bcube",
 * "recursive_doubling", "direct" (two ranks). */
CGLOO_API int cgloo_allreduce(cgloo_context *ctx, const void *sendbuf, void *recvbuf, size_t count,
                              cgloo_dtype dtype, cgloo_op op, const cgloo_coll_opts *opts);

/* cgloo_allreduce_multi: nsend input buffers per rank, reduced locally, then across ranks; the
 * result is written to each of the nrecv output buffers (which may alias the inputs). */
CGLOO_API int cgloo_allreduce_multi(cgloo_context *ctx, const void *const *sendbufs, size_t nsend,
                                    void *const *recvbufs, size_t nrecv, size_t count,
                                    cgloo_dtype dtype, cgloo_op op, const cgloo_coll_opts *opts);

/* cgloo_reduce_scatter: sendbuf holds size blocks of count elements; rank r receives block r
 * reduced over all ranks (count elements) in recvbuf. In place when recvbuf is sendbuf (the
 * result lands at the front) or block r of sendbuf; then the rest of sendbuf is scratch. Other
 * overlaps give EINVAL. Algorithms: "ring", "halving_doubling". */
CGLOO_API int cgloo_reduce_scatter(cgloo_context *ctx, const void *sendbuf, void *recvbuf,
                                   size_t count, cgloo_dtype dtype, cgloo_op op,
                                   const cgloo_coll_opts *opts);
/* cgloo_reduce_scatterv: as above with recvcounts[r] elements for rank r (sendbuf holds their
 * sum, blocks back to back). */
CGLOO_API int cgloo_reduce_scatterv(cgloo_context *ctx, const void *sendbuf, void *recvbuf,
                                    const size_t *recvcounts, cgloo_dtype dtype, cgloo_op op,
                                    const cgloo_coll_opts *opts);

/* cgloo_allgather: recvbuf gets every rank's count elements, rank order. sendbuf may be
 * recvbuf + rank * count * dtype size (in place). Algorithms: "ring", "recursive_doubling". */
CGLOO_API int cgloo_allgather(cgloo_context *ctx, const void *sendbuf, void *recvbuf, size_t count,
                              cgloo_dtype dtype, const cgloo_coll_opts *opts);
/* cgloo_allgatherv: rank r contributes recvcounts[r] elements (sendcount must equal it); blocks
 * are packed back to back in rank order. In place when sendbuf is rank r's block of recvbuf. */
CGLOO_API int cgloo_allgatherv(cgloo_context *ctx, const void *sendbuf, size_t sendcount,
                               void *recvbuf, const size_t *recvcounts, cgloo_dtype dtype,
                               const cgloo_coll_opts *opts);

/* cgloo_broadcast: root's buf is copied to every rank's buf. Algorithms: "flat" (the root
 * sends to every rank), "binomial", "pipeline" (a chain in segments, for large messages). */
CGLOO_API int cgloo_broadcast(cgloo_context *ctx, void *buf, size_t count, cgloo_dtype dtype,
                              int root, const cgloo_coll_opts *opts);

/* cgloo_reduce: root's recvbuf gets sendbuf reduced over all ranks; recvbuf is ignored on
 * other ranks (may be NULL). On the root, recvbuf == sendbuf works (in place); any other
 * overlap of the two is EINVAL. Algorithms: "binomial", "reduce_scatter_gather". */
CGLOO_API int cgloo_reduce(cgloo_context *ctx, const void *sendbuf, void *recvbuf, size_t count,
                           cgloo_dtype dtype, cgloo_op op, int root, const cgloo_coll_opts *opts);

/* cgloo_gather: root's recvbuf gets every rank's count elements in rank order; recvbuf is
 * ignored on other ranks (may be NULL). On the root, sendbuf may be its own block of recvbuf (in
 * place). Algorithms: "direct", "binomial". */
CGLOO_API int cgloo_gather(cgloo_context *ctx, const void *sendbuf, void *recvbuf, size_t count,
                           cgloo_dtype dtype, int root, const cgloo_coll_opts *opts);
/* cgloo_gatherv: rank r sends recvcounts[r] elements (recvcounts needed on every rank). */
CGLOO_API int cgloo_gatherv(cgloo_context *ctx, const void *sendbuf, size_t sendcount,
                            void *recvbuf, const size_t *recvcounts, cgloo_dtype dtype, int root,
                            const cgloo_coll_opts *opts);

/* cgloo_scatter: rank r gets block r (count elements) of root's sendbuf; sendbuf is ignored on
 * other ranks (may be NULL). On the root, recvbuf may be its own block of sendbuf (in place).
 * Algorithms: "direct", "binomial". */
CGLOO_API int cgloo_scatter(cgloo_context *ctx, const void *sendbuf, void *recvbuf, size_t count,
                            cgloo_dtype dtype, int root, const cgloo_coll_opts *opts);
/* cgloo_scatterv: rank r gets sendcounts[r] elements (sendcounts needed on every rank). */
CGLOO_API int cgloo_scatterv(cgloo_context *ctx, const void *sendbuf, const size_t *sendcounts,
                             void *recvbuf, size_t recvcount, cgloo_dtype dtype, int root,
                             const cgloo_coll_opts *opts);

/* cgloo_alltoall: block j (count elements) of rank i's sendbuf lands as block i of rank j's
 * recvbuf. sendbuf == recvbuf works (in place, at the cost of a copy of the send side).
 * Algorithm: "pairwise". */
CGLOO_API int cgloo_alltoall(cgloo_context *ctx, const void *sendbuf, void *recvbuf, size_t count,
                             cgloo_dtype dtype, const cgloo_coll_opts *opts);
/* cgloo_alltoallv: rank i sends sendcounts[j] elements to rank j and receives recvcounts[j]
 * from it; blocks are packed back to back in rank order. sendbuf == recvbuf works as above.
 * For both, buffers that overlap in any other way are EINVAL. */
CGLOO_API int cgloo_alltoallv(cgloo_context *ctx, const void *sendbuf, const size_t *sendcounts,
                              void *recvbuf, const size_t *recvcounts, cgloo_dtype dtype,
                              const cgloo_coll_opts *opts);

/* cgloo_barrier returns once every rank has entered it. Algorithms: "dissemination",
 * "all_to_one" (in to rank 0 and back out). */
CGLOO_API int cgloo_barrier(cgloo_context *ctx, const cgloo_coll_opts *opts);

/* ---------------------------------------------------------------------------------------------
 * Non-blocking collectives. cgloo_i<name> takes the arguments of cgloo_<name> plus a request,
 * starts the collective and returns at once; cgloo_wait or cgloo_test completes the request
 * with the status (and context error detail) the blocking call would have returned.
 *
 * - Progress: the first non-blocking call starts the context's progress thread (or
 *   cgloo_context_attr.progress_thread does at connect). It runs the queued collectives with
 *   the blocking algorithms. Collectives of one tag (opts->tag) run one at a time in the order
 *   they were issued on the context, so they complete in that order and never mix their
 *   messages; collectives of different tags may run at once on further progress threads (up to
 *   16 per context), as blocking ones may from different threads. Every rank must issue the
 *   collectives of one tag in the same order. While a progress thread exists it also moves
 *   large point-to-point transfers (cgloo_isend / cgloo_irecv above the eager size) that no
 *   thread is waiting for.
 * - Buffers, counts and options: buffers must stay untouched (receive buffers unread) until the
 *   request completes; count arrays, option structs and the algorithm name are copied, so they
 *   may be freed at once. A caller's reduce_fn runs on whichever thread runs the collective: a
 * progress thread, or the thread that waits with no timeout for a collective no progress thread has
 *   started (it then runs it itself, which saves waking a sleeping thread).
 * - Order with blocking collectives: a blocking collective called while earlier non-blocking
 *   ones of its tag are unfinished waits for them first (within its own timeout), so a
 *   program's collectives run in program order on every rank.
 * - Timeouts: a collective's own timeout (opts->timeout_ms, else the context default) counts
 *   from when it starts running. cgloo_wait always ends the request: with timeout_ms 0 it waits
 *   until the collective ends (bounded by its own timeout and those of the collectives before
 *   it); when a nonzero timeout_ms passes first (or the interrupt check asks), the collective
 *   is stopped as by cgloo_cancel, the request freed, and ETIMEDOUT (EINTR) returned. Poll
 *   with cgloo_test to look without ending it.
 * - Errors: bad arguments give EINVAL from the call where they can be seen at once (NULL
 *   context or request, a bad dtype, missing count arrays) and otherwise from the wait, as the
 *   blocking call would have. A failure (timeout, dead peer, abort) completes the request with
 *   the blocking call's status; cgloo_wait records its detail as the context's last error.
 * - cgloo_cancel: a collective still queued is withdrawn (it sends nothing); one that has
 *   started is stopped at once (its messages withdrawn, its buffers no longer touched when
 *   cancel returns), which leaves the ranks at different steps: the context is then unfit for
 *   collectives, as after any failure.
 * - cgloo_context_abort_request does what cgloo_cancel does from any thread, while another
 *   thread waits on the request, and leaves the freeing to that wait (see there).
 * - cgloo_context_destroy with non-blocking collectives unfinished aborts them (peers see this
 *   rank go), joins the progress thread and frees their requests: the handles are then invalid.
 * Errors of the calls themselves: EINVAL, ENOMEM, ESTATE (not connected), EABORTED, EIO (the
 * thread could not be started). Never blocks.
 */
CGLOO_API int cgloo_iallreduce(cgloo_context *ctx, const void *sendbuf, void *recvbuf, size_t count,
                               cgloo_dtype dtype, cgloo_op op, const cgloo_coll_opts *opts,
                               cgloo_request **req);
CGLOO_API int cgloo_iallreduce_multi(cgloo_context *ctx, const void *const *sendbufs, size_t nsend,
                                     void *const *recvbufs, size_t nrecv, size_t count,
                                     cgloo_dtype dtype, cgloo_op op, const cgloo_coll_opts *opts,
                                     cgloo_request **req);
CGLOO_API int cgloo_ireduce_scatter(cgloo_context *ctx, const void *sendbuf, void *recvbuf,
                                    size_t count, cgloo_dtype dtype, cgloo_op op,
                                    const cgloo_coll_opts *opts, cgloo_request **req);
CGLOO_API int cgloo_ireduce_scatterv(cgloo_context *ctx, const void *sendbuf, void *recvbuf,
                                     const size_t *recvcounts, cgloo_dtype dtype, cgloo_op op,
                                     const cgloo_coll_opts *opts, cgloo_request **req);
CGLOO_API int cgloo_iallgather(cgloo_context *ctx, const void *sendbuf, void *recvbuf, size_t count,
                               cgloo_dtype dtype, const cgloo_coll_opts *opts, cgloo_request **req);
CGLOO_API int cgloo_iallgatherv(cgloo_context *ctx, const void *sendbuf, size_t sendcount,
                                void *recvbuf, const size_t *recvcounts, cgloo_dtype dtype,
                                const cgloo_coll_opts *opts, cgloo_request **req);
CGLOO_API int cgloo_ibroadcast(cgloo_context *ctx, void *buf, size_t count, cgloo_dtype dtype,
                               int root, const cgloo_coll_opts *opts, cgloo_request **req);
CGLOO_API int cgloo_ireduce(cgloo_context *ctx, const void *sendbuf, void *recvbuf, size_t count,
                            cgloo_dtype dtype, cgloo_op op, int root, const cgloo_coll_opts *opts,
                            cgloo_request **req);
CGLOO_API int cgloo_igather(cgloo_context *ctx, const void *sendbuf, void *recvbuf, size_t count,
                            cgloo_dtype dtype, int root, const cgloo_coll_opts *opts,
                            cgloo_request **req);
CGLOO_API int cgloo_igatherv(cgloo_context *ctx, const void *sendbuf, size_t sendcount,
                             void *recvbuf, const size_t *recvcounts, cgloo_dtype dtype, int root,
                             const cgloo_coll_opts *opts, cgloo_request **req);
CGLOO_API int cgloo_iscatter(cgloo_context *ctx, const void *sendbuf, void *recvbuf, size_t count,
                             cgloo_dtype dtype, int root, const cgloo_coll_opts *opts,
                             cgloo_request **req);
CGLOO_API int cgloo_iscatterv(cgloo_context *ctx, const void *sendbuf, const size_t *sendcounts,
                              void *recvbuf, size_t recvcount, cgloo_dtype dtype, int root,
                              const cgloo_coll_opts *opts, cgloo_request **req);
CGLOO_API int cgloo_ialltoall(cgloo_context *ctx, const void *sendbuf, void *recvbuf, size_t count,
                              cgloo_dtype dtype, const cgloo_coll_opts *opts, cgloo_request **req);
CGLOO_API int cgloo_ialltoallv(cgloo_context *ctx, const void *sendbuf, const size_t *sendcounts,
                               void *recvbuf, const size_t *recvcounts, cgloo_dtype dtype,
                               const cgloo_coll_opts *opts, cgloo_request **req);
CGLOO_API int cgloo_ibarrier(cgloo_context *ctx, const cgloo_coll_opts *opts, cgloo_request **req);

/* cgloo_reduce_local: inout[i] = inout[i] (op) in[i], the library's kernels on local memory;
 * the collectives reduce with the same kernels. Does not block.
 * - Integers (int8 to uint64) wrap on overflow.
 * - float16 and bfloat16 are computed in float32 and rounded to nearest even. min and max follow
 *   IEEE 754-2019 minimum and maximum: a NaN in either input gives NaN, and -0 is below +0; sum
 *   and product propagate NaN.
 * - bool: any non-zero byte is true, and every byte written is 0 or 1. sum and max are a
 *   logical or, product and min a logical and; band, bor and bxor are and, or and xor of the
 *   truth values (1 band 2 is 1). A collective with one input to reduce (one rank, one
 *   buffer) copies it, bytes other than 0 and 1 included.
 * - complex64 and complex128: sum, and product as (a + bi)(c + di) = (ac - bd) + (ad + bc)i,
 *   each product and sum rounded to the part's type: the formula numpy and PyTorch use, with
 *   no fused multiply-add and no recovery of infinities as in C's Annex G ((inf + 0i)(1 + 0i)
 *   is inf + NaN i). They have no min, max or bitwise ops.
 * Pointers must be aligned for the dtype (a complex dtype for its part type). Errors: EINVAL (bad
 * dtype, op, an op the dtype lacks: a bitwise op on a floating-point dtype, min, max or a
 * bitwise op on a complex one; or a NULL pointer with count > 0). */
CGLOO_API int cgloo_reduce_local(void *inout, const void *in, size_t count, cgloo_dtype dtype,
                                 cgloo_op op);

/* cgloo_algorithm_names lists the algorithm names of a collective ("allreduce", ...) as a
 * NULL-terminated static array, or NULL for an unknown collective. */
CGLOO_API const char *const *cgloo_algorithm_names(const char *collective);

#ifdef __cplusplus
}
#endif

#endif /* CGLOO_CGLOO_H */
