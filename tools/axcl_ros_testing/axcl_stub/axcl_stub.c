/*
 * axcl_stub.c - a test double of the *documented* AXCL Runtime API contract, over host memory.
 *
 * This is NOT a claim about how the AX650N card or AXERA's libaxcl_rt.so behave. It implements the entry points our
 * ctypes binding uses, with the signatures, enum values, struct layouts and error-code encoding given in AXERA's
 * public AXCL documentation (axcl-docs, Runtime API chapter and error codes), written from that text.
 * No AXERA header or library is used or copied. Where the documentation is silent (which calls need a current
 * context, which error id a given failure returns, whether a size argument is checked) this stub makes a strict,
 * documented-here choice so that misuse by the binding shows up in tests.
 *
 * Model files are not axmodels: they are small text files written by axcl_ros_testing.stub_models ("AXCLSTUB 1"
 * header) that declare tensors (name, dtype enum, layout enum, dims) and a deterministic operation that computes the
 * outputs from the inputs (yolo, depth, whisper_encoder, whisper_decoder, copy, affine, llm_layer, llm_post, vit).
 *
 * Shape groups (as the AXCL docs describe them: GetShapeGroupsCount, Get*SizeByIndex / Get*Dims take a group,
 * CreateIO takes none, Execute takes one): a model file may declare "groups N" and, per group g >= 1, "shape g
 * input|output NAME ndim dims..." lines overriding group 0's dims (a tensor keeps group 0's dims in groups without
 * a line). Stub choices where the docs are silent: Set*BufferByIndex accepts a buffer at least as large as the
 * smallest size of that tensor over all groups; Execute with group g fails (engine / illegal parameter) when a bound
 * buffer is smaller than group g's size; device pointers may point anywhere inside an allocation (offset pointers),
 * and an input and an output may share memory (the KV cache written in place).
 *
 * Device memory lives in a fake address space (DEV_BASE...) that no host pointer uses; every copy checks the kind
 * and the range of both pointers. A thread without a current context gets a context error from memory and engine
 * calls. Counters and per-function call counts are exported through axclStub* symbols (not part of AXCL).
 *
 * Fault injection (environment, read at the call that uses it):
 *   AXCL_STUB_FAIL_LOAD=1             axclrtEngineLoadFromFile fails (engine / fail)
 *   AXCL_STUB_FAIL_EXECUTE_AFTER=N    the (N+1)-th and later executes of each loaded model fail (engine / execute)
 *   AXCL_STUB_DEVICE_LOST_AFTER=N     after N API calls since axclInit every call fails (device / unexpected
 *                                     response) until axclFinalize, which succeeds and frees everything
 *   AXCL_STUB_DEVICE_IDS="129,130"    device ids reported by axclrtGetDeviceList (read at axclInit; default "129")
 *   AXCL_STUB_REPORT=<path>           write counters and call counts to <path> when the library is unloaded
 *   AXCL_STUB_NO_CARD=1               axclInit fails with device/open failed (0x8030010B), as without a card
 *   AXCL_STUB_LOAD_US=N               a model load (and GetModelType, which loads the model) takes N us
 *   AXCL_STUB_PROPERTIES_US=N         axclrtGetDeviceProperties takes N us (default 50000: shell commands on the card)
 *
 * Link model (read at axclInit; off unless AXCL_STUB_LINK is set): AXCL_STUB_LINK=pi5 gives copies a duration of
 * latency + bytes / bandwidth (AXCL_STUB_XFER_LATENCY_US, default 50; AXCL_STUB_H2D_MBPS, default 375;
 * AXCL_STUB_D2H_MBPS, default 435 - derived from published Gen2 x1 stage times, axcl_api.md section 4) and executes
 * a duration of the model's "exec_us" param (or AXCL_STUB_EXEC_US). Resources per device: one H2D DMA engine, one
 * D2H DMA engine, one NPU queue. Each operation starts when its stream's previous operation and its resource are
 * done; synchronous calls wait for their end, asynchronous ones (MemcpyAsync, ExecuteAsync) return at once and
 * axclrtSynchronizeStream waits. Data is moved eagerly at enqueue time (only timing is simulated), which is exact
 * for callers that do not touch a buffer before synchronizing its stream.
 *
 * Build: cc -shared -fPIC -O2 -pthread -o libaxcl_rt.so axcl_stub.c -lm
 */

#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXPORT __attribute__((visibility("default")))

typedef int32_t axclError;
typedef void *axclrtContext;
typedef void *axclrtStream;
typedef void *axclrtEngineIOInfo;
typedef void *axclrtEngineIO;

/* ---- documented types -------------------------------------------------------------------------------------- */
#define AXCL_MAX_DEVICE_COUNT 256
#define AXCLRT_ENGINE_MAX_DIM_CNT 32

typedef struct {
    uint32_t num;
    int32_t devices[AXCL_MAX_DEVICE_COUNT];
} axclrtDeviceList;

typedef struct {
    int32_t dimCount;
    int32_t dims[AXCLRT_ENGINE_MAX_DIM_CNT];
} axclrtEngineIODims;

typedef struct {
    char swVersion[64];
    uint64_t uid;
    uint32_t pciDomain;
    uint32_t pciBusID;
    uint32_t pciDeviceID;
    int32_t temperature;
    uint32_t totalMemSize;
    uint32_t freeMemSize;
    uint32_t totalCmmSize;
    uint32_t freeCmmSize;
    uint32_t cpuLoading;
    uint32_t npuLoading;
    uint32_t reserved[32];
} axclrtDeviceProperties;

enum { K_H2H = 0, K_H2D = 1, K_D2H = 2, K_D2D = 3 };
enum { DT_NONE = 0, DT_INT4, DT_UINT4, DT_INT8, DT_UINT8, DT_INT16, DT_UINT16, DT_INT32, DT_UINT32, DT_INT64,
       DT_UINT64, DT_FP4, DT_FP8, DT_FP16, DT_BF16, DT_FP32, DT_FP64 };

/* ---- error codes: 0x80000000 | module<<24 | 0x30<<16 | sub<<8 | errid (module 0 = runtime) -------------------- */
#define ERR(sub, id) ((axclError)(0x80000000u | (0x30u << 16) | ((uint32_t)(sub) << 8) | (uint32_t)(id)))
enum { SUB_DEVICE = 1, SUB_CONTEXT = 2, SUB_STREAM = 3, SUB_TASK = 4, SUB_MEMORY = 5, SUB_CONFIG = 6,
       SUB_ENGINE = 7 };
enum { E_FAIL = 0x01, E_NULL = 0x02, E_PARAM = 0x03, E_UNSUPPORTED = 0x04, E_TIMEOUT = 0x05, E_BUSY = 0x06,
       E_NOMEM = 0x07, E_UNEXPECTED = 0x0A, E_OPEN = 0x0B, E_EXEC = 0x0C, E_INVALID_INDEX = 0x81,
       E_INVALID_DEVICE = 0x84, E_NO_ACTIVE = 0x85 };
/* no current context -> context/0x84 (0x80300284, as libaxcl_rt.so V3.10.2 returns); stub choice (not documented):
 * device lost -> device/unexpected response */
#define ERR_NO_CONTEXT ERR(SUB_CONTEXT, 0x84)
#define ERR_NOT_INIT ERR(SUB_DEVICE, E_NO_ACTIVE)
#define ERR_LOST ERR(SUB_DEVICE, E_UNEXPECTED)

/* ---- call accounting ----------------------------------------------------------------------------------------- */
#define STUB_FUNCS(X) \
    X(axclInit) X(axclFinalize) X(axclSetLogLevel) X(axclrtGetVersion) X(axclrtGetFullVersion) X(axclrtGetSocName) \
    X(axclrtSetDevice) X(axclrtResetDevice) X(axclrtGetDevice) X(axclrtGetDeviceCount) X(axclrtGetDeviceList) \
    X(axclrtSynchronizeDevice) X(axclrtGetDeviceProperties) X(axclrtCreateContext) X(axclrtDestroyContext) \
    X(axclrtSetCurrentContext) X(axclrtGetCurrentContext) X(axclrtMalloc) X(axclrtMallocCached) X(axclrtFree) \
    X(axclrtMallocHost) X(axclrtFreeHost) X(axclrtMemset) X(axclrtMemcpy) X(axclrtEngineInit) \
    X(axclrtEngineGetVNpuKind) X(axclrtEngineFinalize) X(axclrtEngineLoadFromFile) X(axclrtEngineUnload) \
    X(axclrtEngineGetModelCompilerVersion) X(axclrtEngineGetModelType) X(axclrtEngineGetModelTypeFromModelId) \
    X(axclrtEngineCreateContext) X(axclrtEngineGetIOInfo) X(axclrtEngineDestroyIOInfo) \
    X(axclrtEngineGetShapeGroupsCount) X(axclrtEngineGetNumInputs) X(axclrtEngineGetNumOutputs) \
    X(axclrtEngineGetInputSizeByIndex) X(axclrtEngineGetOutputSizeByIndex) X(axclrtEngineGetInputNameByIndex) \
    X(axclrtEngineGetOutputNameByIndex) X(axclrtEngineGetInputIndexByName) X(axclrtEngineGetOutputIndexByName) \
    X(axclrtEngineGetInputDims) X(axclrtEngineGetOutputDims) X(axclrtEngineGetInputDataType) \
    X(axclrtEngineGetOutputDataType) X(axclrtEngineGetInputDataLayout) X(axclrtEngineGetOutputDataLayout) \
    X(axclrtEngineCreateIO) X(axclrtEngineDestroyIO) X(axclrtEngineSetInputBufferByIndex) \
    X(axclrtEngineSetOutputBufferByIndex) X(axclrtEngineGetInputBufferByIndex) \
    X(axclrtEngineGetOutputBufferByIndex) X(axclrtEngineExecute) X(axclrtEngineSetDynamicBatchSize) \
    X(axclrtCreateStream) X(axclrtDestroyStream) X(axclrtSynchronizeStream) X(axclrtMemcpyAsync) \
    X(axclrtEngineExecuteAsync)

#define X_ENUM(n) FN_##n,
enum { STUB_FUNCS(X_ENUM) FN_COUNT };
#define X_NAME(n) #n,
static const char *const fn_names[FN_COUNT] = { STUB_FUNCS(X_NAME) };

typedef struct {
    uint64_t h2d_bytes, d2h_bytes, d2d_bytes, h2h_bytes;
    uint64_t h2d_calls, d2h_calls, d2d_calls, h2h_calls;
    uint64_t memset_bytes, memset_calls;
    uint64_t executes, failed_calls, total_calls, calls_since_init;
    int64_t outstanding_allocs, outstanding_bytes, outstanding_host_allocs;
    int64_t loaded_models, outstanding_ioinfos, outstanding_ios, live_contexts;
    int64_t reclaimed_at_teardown; /* objects the stub had to free in ResetDevice/Finalize (leaks by the caller) */
    int32_t initialized, device_lost;
    int64_t outstanding_streams, async_ops;
} axclStubCounters;

/* ---- state ----------------------------------------------------------------------------------------------------- */
#define DEV_BASE 0x00C0000000000000ull
#define DEV_SPAN 0x0001000000000000ull
#define MAX_DEVICES 16
#define MAX_T 16
#define LAYOUT_NCHW 2 /* axclrtEngineDataLayout: NONE=0, NHWC=1, NCHW=2 */
#define MAX_PARAMS 32
#define MAX_INTS 512
#define CTX_MAGIC 0xC0C7C0C7u
#define INFO_MAGIC 0x1F01F01Fu
#define IO_MAGIC 0x10AB10ABu

typedef struct {
    char name[128];
    int dtype, layout, ndim;
    int32_t dims[AXCLRT_ENGINE_MAX_DIM_CNT];
    uint64_t size; /* bytes reported by Get*SizeByIndex (element bytes + pad) */
    uint64_t elems;
} tensor_t;

enum { OP_COPY = 0, OP_AFFINE, OP_YOLO, OP_DEPTH, OP_WENC, OP_WDEC, OP_LLM_LAYER, OP_LLM_POST, OP_VIT };
#define MAX_G 16

typedef struct model {
    uint64_t id;
    int32_t device;
    int op, cores;
    int n_in, n_out;
    tensor_t in[MAX_T], out[MAX_T];
    int n_groups;                          /* shape groups (1 for a normal model) */
    tensor_t gin[MAX_G][MAX_T], gout[MAX_G][MAX_T]; /* per-group tensors (gin[0] = in) */
    int n_params;
    char pkey[MAX_PARAMS][32];
    double pval[MAX_PARAMS];
    int n_ints;
    int32_t ints[MAX_INTS]; /* "ints seq ..." list (whisper decoder token sequence) */
    uint64_t n_exec;
    uint64_t ctx_ids[8];
    int n_ctx;
    struct model *next;
} model_t;

typedef struct ctx {
    uint32_t magic;
    int32_t device;
    int destroyed;
    struct ctx *next;
} ctx_t;

typedef struct info {
    uint32_t magic;
    uint64_t model_id;
    int32_t device;
    int n_in, n_out;
    tensor_t in[MAX_T], out[MAX_T]; /* copies: names live as long as the info */
    int n_groups;
    tensor_t gin[MAX_G][MAX_T], gout[MAX_G][MAX_T];
    struct info *next;
} info_t;

typedef struct io {
    uint32_t magic;
    uint64_t model_id;
    int32_t device;
    int n_in, n_out;
    uint64_t in_addr[MAX_T], in_size[MAX_T], out_addr[MAX_T], out_size[MAX_T];
    uint64_t need_in[MAX_T], need_out[MAX_T];
    struct io *next;
} io_t;

typedef struct {
    uint64_t addr;
    uint64_t size;
    unsigned char *host;
    int32_t device;
} block_t;

typedef struct {
    int32_t id;
    int set_refs;
    ctx_t *default_ctx;
    int engine_inited, vnpu;
    uint64_t h2d_free, d2h_free, npu_free; /* link model: when each resource is next free (monotonic us) */
} device_t;

#define STREAM_MAGIC 0x57EA4A11u
typedef struct stream {
    uint32_t magic;
    int32_t device;
    uint64_t tail; /* link model: end of the stream's last operation (monotonic us) */
    struct stream *next;
} stream_t;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_inited;
static int g_lost;
static device_t g_dev[MAX_DEVICES];
static int g_ndev;
static ctx_t *g_ctxs;
static model_t *g_models;
static info_t *g_infos;
static io_t *g_ios;
static uint64_t g_next_model = 1, g_next_ectx = 1;
static block_t *g_blocks;
static size_t g_nblocks, g_capblocks;
static uint64_t g_next_addr = DEV_BASE + 0x100000;
static uint64_t g_calls[FN_COUNT];
#define LOG_LEN 1024
static int32_t g_log[LOG_LEN]; /* ring of the most recent function indices */
static uint64_t g_log_n;
static axclStubCounters g_c;
static __thread ctx_t *t_cur;
static __thread uint64_t t_sync_tail; /* link model: the calling thread's synchronous calls form one stream */
static stream_t *g_streams;
static int g_link;
static double g_h2d_bpus, g_d2h_bpus; /* bytes per microsecond */
static long g_xfer_lat_us, g_exec_us;

/* ---- helpers (called with g_mu held) ------------------------------------------------------------------------- */
static long env_long(const char *name, long dflt) {
    const char *v = getenv(name);
    if (!v || !*v) return dflt;
    char *end = NULL;
    long r = strtol(v, &end, 10);
    return (end && end != v) ? r : dflt;
}

/* The real library writes its log lines to stdout (not stderr) and axclSetLogLevel does not silence them; the stub
 * does the same so that callers printing machine-readable output must keep the library off their stdout. */
static void vlog(const char *level, const char *where, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void vlog(const char *level, const char *where, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stdout, "[%s][axcl_stub][%s]: %s\n", level, where, msg);
    fflush(stdout);
}

static void sleep_us(long us) {
    if (us <= 0) return;
    struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
    nanosleep(&ts, NULL);
}

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void sleep_until_us(uint64_t end) {
    uint64_t now = now_us();
    if (end > now) sleep_us((long)(end - now));
}

/* link model: an operation of dur us on resource *res, after *tail; returns its end (lock held) */
static uint64_t link_schedule(uint64_t *res, uint64_t *tail, uint64_t dur) {
    uint64_t start = now_us();
    if (*res > start) start = *res;
    if (*tail > start) start = *tail;
    uint64_t end = start + dur;
    *res = end;
    *tail = end;
    return end;
}

static axclError enter(int fn) {
    g_calls[fn]++;
    g_log[g_log_n++ % LOG_LEN] = fn;
    g_c.total_calls++;
    if (g_inited) {
        g_c.calls_since_init++;
        long lost_after = env_long("AXCL_STUB_DEVICE_LOST_AFTER", -1);
        if (lost_after >= 0 && (long)g_c.calls_since_init > lost_after) g_lost = 1;
    }
    if (g_lost) {
        g_c.failed_calls++;
        return ERR_LOST;
    }
    return 0;
}

static device_t *find_device(int32_t id) {
    for (int i = 0; i < g_ndev; i++)
        if (g_dev[i].id == id) return &g_dev[i];
    return NULL;
}

static int ctx_valid(const ctx_t *c) {
    for (ctx_t *p = g_ctxs; p; p = p->next)
        if (p == c) return c->magic == CTX_MAGIC && !c->destroyed;
    return 0;
}

/* current context of this thread, or NULL */
static ctx_t *cur_ctx(void) {
    return (t_cur && ctx_valid(t_cur)) ? t_cur : NULL;
}

static ctx_t *new_ctx(int32_t device) {
    ctx_t *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->magic = CTX_MAGIC;
    c->device = device;
    c->next = g_ctxs;
    g_ctxs = c;
    g_c.live_contexts++;
    return c;
}

static void destroy_ctx(ctx_t *c) {
    if (!c->destroyed) {
        c->destroyed = 1;
        g_c.live_contexts--;
    }
}

static int in_dev_space(uint64_t a) { return a >= DEV_BASE && a < DEV_BASE + DEV_SPAN; }

/* block holding [addr, addr+count) or NULL */
static block_t *find_block(uint64_t addr, uint64_t count) {
    for (size_t i = 0; i < g_nblocks; i++) {
        block_t *b = &g_blocks[i];
        if (addr >= b->addr && addr < b->addr + b->size) {
            if (count > b->size - (addr - b->addr)) return NULL;
            return b;
        }
    }
    return NULL;
}

static unsigned char *dev_host(uint64_t addr, uint64_t count, int32_t device) {
    block_t *b = find_block(addr, count ? count : 1);
    if (!b || b->device != device) return NULL;
    return b->host + (addr - b->addr);
}

static void free_block_at(size_t i) {
    g_c.outstanding_allocs--;
    g_c.outstanding_bytes -= (int64_t)g_blocks[i].size;
    free(g_blocks[i].host);
    g_blocks[i] = g_blocks[--g_nblocks];
}

static size_t dtype_bytes(int dt, uint64_t elems) {
    switch (dt) {
    case DT_INT4: case DT_UINT4: case DT_FP4: return (size_t)((elems + 1) / 2);
    case DT_INT8: case DT_UINT8: case DT_FP8: return (size_t)elems;
    case DT_INT16: case DT_UINT16: case DT_FP16: case DT_BF16: return (size_t)elems * 2;
    case DT_INT32: case DT_UINT32: case DT_FP32: return (size_t)elems * 4;
    case DT_INT64: case DT_UINT64: case DT_FP64: return (size_t)elems * 8;
    default: return 0;
    }
}

static double param(const model_t *m, const char *key, double dflt) {
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(m->pkey[i], key) == 0) return m->pval[i];
    return dflt;
}

static int find_tensor(const tensor_t *t, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0) return i;
    return -1;
}

static model_t *find_model(uint64_t id) {
    for (model_t *m = g_models; m; m = m->next)
        if (m->id == id) return m;
    return NULL;
}

static void free_model(model_t *m) {
    model_t **pp = &g_models;
    while (*pp && *pp != m) pp = &(*pp)->next;
    if (*pp) *pp = m->next;
    free(m);
    g_c.loaded_models--;
}

static void free_info(info_t *i) {
    info_t **pp = &g_infos;
    while (*pp && *pp != i) pp = &(*pp)->next;
    if (*pp) *pp = i->next;
    i->magic = 0;
    free(i);
    g_c.outstanding_ioinfos--;
}

static void free_io(io_t *io) {
    io_t **pp = &g_ios;
    while (*pp && *pp != io) pp = &(*pp)->next;
    if (*pp) *pp = io->next;
    io->magic = 0;
    free(io);
    g_c.outstanding_ios--;
}

/* ---- model file parsing ---------------------------------------------------------------------------------------- */
static int parse_tensor(char *rest, tensor_t *t) {
    char *save = NULL;
    char *tok = strtok_r(rest, " \t\r\n", &save);
    if (!tok || strlen(tok) >= sizeof(t->name)) return -1;
    strcpy(t->name, tok);
    char *a = strtok_r(NULL, " \t\r\n", &save);
    char *b = strtok_r(NULL, " \t\r\n", &save);
    char *c = strtok_r(NULL, " \t\r\n", &save);
    if (!a || !b || !c) return -1;
    t->dtype = atoi(a);
    t->layout = atoi(b);
    t->ndim = atoi(c);
    if (t->ndim < 0 || t->ndim > AXCLRT_ENGINE_MAX_DIM_CNT) return -1;
    t->elems = 1;
    for (int i = 0; i < t->ndim; i++) {
        char *d = strtok_r(NULL, " \t\r\n", &save);
        if (!d) return -1;
        t->dims[i] = atoi(d);
        if (t->dims[i] <= 0) return -1;
        t->elems *= (uint64_t)t->dims[i];
    }
    uint64_t pad = 0;
    char *extra = strtok_r(NULL, " \t\r\n", &save);
    if (extra && strncmp(extra, "pad=", 4) == 0) pad = strtoull(extra + 4, NULL, 10);
    size_t bytes = dtype_bytes(t->dtype, t->elems);
    if (bytes == 0) return -1;
    t->size = bytes + pad;
    return 0;
}

static int op_from_name(const char *s) {
    if (strcmp(s, "copy") == 0) return OP_COPY;
    if (strcmp(s, "affine") == 0) return OP_AFFINE;
    if (strcmp(s, "yolo") == 0) return OP_YOLO;
    if (strcmp(s, "depth") == 0) return OP_DEPTH;
    if (strcmp(s, "whisper_encoder") == 0) return OP_WENC;
    if (strcmp(s, "whisper_decoder") == 0) return OP_WDEC;
    if (strcmp(s, "llm_layer") == 0) return OP_LLM_LAYER;
    if (strcmp(s, "llm_post") == 0) return OP_LLM_POST;
    if (strcmp(s, "vit") == 0) return OP_VIT;
    return -1;
}

static int shape_is(const tensor_t *t, int dtype, int ndim) { return t->dtype == dtype && t->ndim == ndim; }

/* op-specific shape checks so that a bad stub model fails at load with a message */
static const char *check_model(const model_t *m) {
    switch (m->op) {
    case OP_COPY:
        if (m->n_in < 1 || m->n_out < 1) return "copy needs >=1 input and output";
        return NULL;
    case OP_AFFINE:
        if (m->n_in != 1 || m->n_out != 1 || m->in[0].dtype != DT_FP32 || m->out[0].dtype != DT_FP32 ||
            m->in[0].elems != m->out[0].elems)
            return "affine needs one fp32 input and one fp32 output of the same size";
        return NULL;
    case OP_YOLO: {
        if (m->n_in != 1 || !shape_is(&m->in[0], DT_UINT8, 4) || m->in[0].dims[3] != 3)
            return "yolo needs one uint8 [1,H,W,3] input";
        int reg = (int)param(m, "reg_max", 16), dfl = 0;
        for (int i = 0; i < m->n_out; i++) {
            const tensor_t *o = &m->out[i];
            /* DFL heads [1,g,g,4*reg_max+classes]; seg/pose models add smaller-channel tensors (mask-coefficient
               or keypoint heads [1,g,g,c]) and seg models prototypes, NCHW [1,c,p,p] as AXERA's yolo11-seg
               axmodels report them (or NHWC [1,p,p,c]) */
            if (shape_is(o, DT_FP32, 4) && o->layout == LAYOUT_NCHW && o->dims[2] == o->dims[3]) continue;
            if (!shape_is(o, DT_FP32, 4) || o->dims[1] != o->dims[2])
                return "yolo outputs must be fp32 [1,g,g,c] (or NCHW prototypes [1,c,p,p])";
            if (o->dims[3] > 4 * reg) dfl++;
        }
        if (dfl < 1) return "yolo needs DFL heads fp32 [1,g,g,4*reg_max+classes]";
        return NULL;
    }
    case OP_DEPTH:
        if (m->n_in != 1 || m->n_out != 1 || !shape_is(&m->in[0], DT_UINT8, 4) || m->in[0].dims[3] != 3 ||
            !shape_is(&m->out[0], DT_FP32, 4) || m->out[0].dims[1] != 1 || m->out[0].dims[2] != m->in[0].dims[1] ||
            m->out[0].dims[3] != m->in[0].dims[2])
            return "depth needs uint8 [1,H,W,3] -> fp32 [1,1,H,W]";
        return NULL;
    case OP_WENC: {
        if (m->n_in != 1 || m->n_out != 2 || !shape_is(&m->in[0], DT_FP32, 3)) return "encoder needs mel fp32 [1,M,T]";
        for (int i = 0; i < 2; i++)
            if (!shape_is(&m->out[i], DT_FP32, 4)) return "encoder outputs must be fp32 [L,1,A,D]";
        return NULL;
    }
    case OP_WDEC: {
        static const char *names[] = { "tokens", "self_k", "self_v", "cross_k", "cross_v", "offset", "mask" };
        for (int i = 0; i < 7; i++)
            if (find_tensor(m->in, m->n_in, names[i]) < 0) return "decoder misses an input (tokens, self_k, ...)";
        if (find_tensor(m->out, m->n_out, "logits") < 0 || find_tensor(m->out, m->n_out, "this_self_k") < 0 ||
            find_tensor(m->out, m->n_out, "this_self_v") < 0)
            return "decoder misses an output (logits, this_self_k, this_self_v)";
        const tensor_t *sk = &m->in[find_tensor(m->in, m->n_in, "self_k")];
        const tensor_t *ck = &m->in[find_tensor(m->in, m->n_in, "cross_k")];
        const tensor_t *mk = &m->in[find_tensor(m->in, m->n_in, "mask")];
        const tensor_t *tk = &m->out[find_tensor(m->out, m->n_out, "this_self_k")];
        if (!shape_is(sk, DT_FP32, 4) || !shape_is(ck, DT_FP32, 4) || !shape_is(tk, DT_FP32, 4) ||
            mk->dtype != DT_INT32 || (int64_t)mk->elems != sk->dims[2] || tk->dims[0] != sk->dims[0] ||
            tk->dims[3] != sk->dims[3] || ck->dims[0] != sk->dims[0] || ck->dims[3] != sk->dims[3])
            return "decoder tensors have inconsistent shapes";
        if (sk->dims[3] < 3) return "decoder needs D >= 3";
        return NULL;
    }
    case OP_LLM_LAYER: {
        static const char *ins[] = { "input", "indices", "K_cache", "V_cache", "mask" };
        static const char *outs[] = { "K_cache_out", "V_cache_out", "output" };
        for (int i = 0; i < 5; i++)
            if (find_tensor(m->in, m->n_in, ins[i]) < 0) return "llm_layer misses an input (input, indices, ...)";
        for (int i = 0; i < 3; i++)
            if (find_tensor(m->out, m->n_out, outs[i]) < 0) return "llm_layer misses an output (K_cache_out, ...)";
        for (int g = 0; g < m->n_groups; g++) {
            const tensor_t *x = &m->gin[g][find_tensor(m->in, m->n_in, "input")];
            const tensor_t *ix = &m->gin[g][find_tensor(m->in, m->n_in, "indices")];
            const tensor_t *k = &m->gin[g][find_tensor(m->in, m->n_in, "K_cache")];
            const tensor_t *mk = &m->gin[g][find_tensor(m->in, m->n_in, "mask")];
            const tensor_t *ko = &m->gout[g][find_tensor(m->out, m->n_out, "K_cache_out")];
            const tensor_t *o = &m->gout[g][find_tensor(m->out, m->n_out, "output")];
            if (!shape_is(x, DT_BF16, 3) || !shape_is(k, DT_BF16, 3) || !shape_is(mk, DT_BF16, 3) ||
                !shape_is(ko, DT_BF16, 3) || !shape_is(o, DT_BF16, 3) || ix->dtype != DT_UINT32)
                return "llm_layer tensors must be bf16 [1,T,.] (indices uint32)";
            int T = x->dims[1], C = k->dims[1];
            if ((int64_t)ix->elems != T || ko->dims[1] != T || o->dims[1] != T || ko->dims[2] != k->dims[2] ||
                o->dims[2] != x->dims[2] || mk->dims[1] != T || mk->dims[2] != C + (g == 0 ? 1 : T))
                return "llm_layer group shapes are inconsistent (mask [1,T,C+1] in group 0, [1,T,C+T] in prefill)";
            if (x->dims[2] < 8 || k->dims[2] < 4) return "llm_layer needs H >= 8 and kv_dim >= 4";
        }
        return NULL;
    }
    case OP_LLM_POST:
        if (m->n_in != 1 || !shape_is(&m->in[0], DT_BF16, 3) || m->in[0].dims[2] < 8 || m->n_out < 1 ||
            m->out[0].dtype != DT_BF16)
            return "llm_post needs input bf16 [1,1,H>=8] -> output bf16 logits";
        if (m->n_out > 1 && (m->out[1].dtype != DT_INT32 || m->out[1].elems != m->out[0].elems))
            return "llm_post top-k: output 0 bf16 values [1,1,k], output 1 int32 indices [1,1,k]";
        return NULL;
    case OP_VIT:
        if (m->n_in != 1 || m->in[0].ndim != 4 || (m->in[0].dtype != DT_UINT8 && m->in[0].dtype != DT_FP32) ||
            m->n_out != 1 || !shape_is(&m->out[0], DT_BF16, 3) || m->out[0].dims[2] < 8)
            return "vit needs u8 [1,S,S,3] or fp32 [1,3,S,S] -> bf16 [1,N,H>=8]";
        return NULL;
    default:
        return "unknown op";
    }
}

/* returns 0, or an error code; *why gets a message for stderr */
static axclError parse_model(const char *path, model_t *m, const char **why) {
    FILE *f = fopen(path, "r");
    if (!f) {
        *why = "cannot open file";
        return ERR(SUB_ENGINE, E_OPEN);
    }
    char line[8192];
    int lineno = 0, ok_magic = 0;
    axclError rc = 0;
    m->op = -1;
    m->cores = 1;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char *save = NULL;
        char *kw = strtok_r(line, " \t\r\n", &save);
        if (!kw || kw[0] == '#') continue;
        if (lineno == 1 || !ok_magic) {
            if (strcmp(kw, "AXCLSTUB") != 0) {
                *why = "not a stub model (missing AXCLSTUB header)";
                rc = ERR(SUB_ENGINE, E_PARAM);
                break;
            }
            ok_magic = 1;
            continue;
        }
        char *rest = save;
        if (strcmp(kw, "op") == 0) {
            char *v = strtok_r(NULL, " \t\r\n", &save);
            m->op = v ? op_from_name(v) : -1;
        } else if (strcmp(kw, "cores") == 0) {
            char *v = strtok_r(NULL, " \t\r\n", &save);
            m->cores = v ? atoi(v) : 1;
        } else if (strcmp(kw, "param") == 0) {
            char *k = strtok_r(NULL, " \t\r\n", &save);
            char *v = strtok_r(NULL, " \t\r\n", &save);
            if (!k || !v || m->n_params >= MAX_PARAMS || strlen(k) >= 32) {
                *why = "bad param line";
                rc = ERR(SUB_ENGINE, E_PARAM);
                break;
            }
            strcpy(m->pkey[m->n_params], k);
            m->pval[m->n_params++] = strtod(v, NULL);
        } else if (strcmp(kw, "ints") == 0) {
            char *v;
            strtok_r(NULL, " \t\r\n", &save); /* list name (only one list: seq) */
            while ((v = strtok_r(NULL, " \t\r\n", &save)) && m->n_ints < MAX_INTS) m->ints[m->n_ints++] = atoi(v);
        } else if (strcmp(kw, "input") == 0 || strcmp(kw, "output") == 0) {
            int is_in = kw[0] == 'i';
            int *n = is_in ? &m->n_in : &m->n_out;
            if (*n >= MAX_T || parse_tensor(rest, is_in ? &m->in[*n] : &m->out[*n]) != 0) {
                *why = "bad tensor line (name dtype layout ndim dims... [pad=N])";
                rc = ERR(SUB_ENGINE, E_PARAM);
                break;
            }
            (*n)++;
        } else if (strcmp(kw, "groups") == 0) {
            char *v = strtok_r(NULL, " \t\r\n", &save);
            m->n_groups = v ? atoi(v) : 0;
            if (m->n_groups < 1 || m->n_groups > MAX_G) {
                *why = "groups must be 1..16";
                rc = ERR(SUB_ENGINE, E_PARAM);
                break;
            }
        } else if (strcmp(kw, "shape") == 0) {
            /* shape <group> input|output <name> <ndim> <dims...> (after the tensor lines) */
            char *gs = strtok_r(NULL, " \t\r\n", &save);
            char *kind = strtok_r(NULL, " \t\r\n", &save);
            char *name = strtok_r(NULL, " \t\r\n", &save);
            int g = gs ? atoi(gs) : -1;
            int is_in = kind && strcmp(kind, "input") == 0;
            int k = name ? find_tensor(is_in ? m->in : m->out, is_in ? m->n_in : m->n_out, name) : -1;
            if (g < 1 || g >= MAX_G || g >= (m->n_groups ? m->n_groups : 1) || k < 0 ||
                (!is_in && (!kind || strcmp(kind, "output") != 0))) {
                *why = "bad shape line (shape <group 1..groups-1> input|output <declared name> ndim dims...)";
                rc = ERR(SUB_ENGINE, E_PARAM);
                break;
            }
            tensor_t *base = is_in ? &m->in[k] : &m->out[k];
            tensor_t *t = is_in ? &m->gin[g][k] : &m->gout[g][k];
            *t = *base;
            char *c = strtok_r(NULL, " \t\r\n", &save);
            t->ndim = c ? atoi(c) : -1;
            t->elems = 1;
            int okd = t->ndim >= 0 && t->ndim <= AXCLRT_ENGINE_MAX_DIM_CNT;
            for (int d = 0; okd && d < t->ndim; d++) {
                char *dv = strtok_r(NULL, " \t\r\n", &save);
                t->dims[d] = dv ? atoi(dv) : 0;
                okd = t->dims[d] > 0;
                t->elems *= (uint64_t)(okd ? t->dims[d] : 1);
            }
            if (!okd) {
                *why = "bad dims in shape line";
                rc = ERR(SUB_ENGINE, E_PARAM);
                break;
            }
            t->size = dtype_bytes(t->dtype, t->elems) + (base->size - dtype_bytes(base->dtype, base->elems));
        } else if (strcmp(kw, "end") == 0) {
            break;
        } else {
            *why = "unknown keyword";
            rc = ERR(SUB_ENGINE, E_PARAM);
            break;
        }
    }
    fclose(f);
    if (!rc && !ok_magic) {
        *why = "empty file";
        rc = ERR(SUB_ENGINE, E_PARAM);
    }
    if (!rc && m->op < 0) {
        *why = "missing or unknown op";
        rc = ERR(SUB_ENGINE, E_PARAM);
    }
    if (!rc) { /* groups without a shape line for a tensor keep group 0's dims */
        if (m->n_groups < 1) m->n_groups = 1;
        for (int g = 0; g < m->n_groups; g++) {
            for (int k = 0; k < m->n_in; k++)
                if (g == 0 || m->gin[g][k].size == 0) m->gin[g][k] = m->in[k];
            for (int k = 0; k < m->n_out; k++)
                if (g == 0 || m->gout[g][k].size == 0) m->gout[g][k] = m->out[k];
        }
    }
    if (!rc && (m->cores < 1 || m->cores > 3)) {
        *why = "cores must be 1..3";
        rc = ERR(SUB_ENGINE, E_PARAM);
    }
    if (!rc) {
        const char *bad = check_model(m);
        if (bad) {
            *why = bad;
            rc = ERR(SUB_ENGINE, E_PARAM);
        }
    }
    if (rc && lineno) fprintf(stderr, "axcl_stub: %s:%d: %s\n", path, lineno, *why);
    else if (rc) fprintf(stderr, "axcl_stub: %s: %s\n", path, *why);
    return rc;
}

/* ---- operations (run without the lock on host views of device buffers) ---------------------------------------- */
static float sigmoid_inv(double p) { return (float)log(p / (1.0 - p)); }

static void op_yolo(const model_t *m, unsigned char **in, unsigned char **out) {
    const tensor_t *ti = &m->in[0];
    uint64_t n = ti->elems, sum = 0;
    const unsigned char *px = in[0];
    for (uint64_t i = 0; i < n; i++) sum += px[i];
    double mean = n ? (double)sum / (double)n : 0.0;
    int reg = (int)param(m, "reg_max", 16);
    int head = (int)param(m, "head", m->n_out > 1 ? 1 : 0);
    if (head >= m->n_out) head = m->n_out - 1;
    float score = sigmoid_inv(param(m, "score", 0.9));
    int dist[4] = { (int)param(m, "left", 2), (int)param(m, "top", 3), (int)param(m, "right", 4),
                    (int)param(m, "bottom", 5) };
    int planted_grid = m->out[head].dims[1];
    for (int h = 0; h < m->n_out; h++) {
        const tensor_t *t = &m->out[h];
        int g = t->dims[1], c = t->dims[3], ncls = c - 4 * reg;
        float *o = (float *)out[h];
        if (t->layout == LAYOUT_NCHW) { /* prototypes [1,c,p,p]: channel 0 = 1 everywhere (mask = box) */
            int64_t plane = (int64_t)t->dims[2] * t->dims[3];
            memset(o, 0, sizeof(float) * (size_t)plane * t->dims[1]);
            for (int64_t cell = 0; cell < plane; cell++) o[cell] = 1.0f;
            continue;
        }
        if (ncls <= 0) {
            /* seg/pose extras: zeros, except channel 0 = 1 at the planted cell of the head's grid (mask
               coefficient e0 / keypoints at the cell corner) and everywhere in a prototype tensor (mask = box) */
            memset(o, 0, sizeof(float) * (size_t)g * g * c);
            int is_head = 0;
            for (int k = 0; k < m->n_out; k++)
                if (m->out[k].layout != LAYOUT_NCHW && m->out[k].dims[3] > 4 * reg && m->out[k].dims[1] == g)
                    is_head = 1;
            if (g == planted_grid) o[((int64_t)(g / 2) * g + g / 2) * c] = 1.0f;
            else if (!is_head) for (int64_t cell = 0; cell < (int64_t)g * g; cell++) o[cell * c] = 1.0f;
            continue;
        }
        for (int64_t cell = 0; cell < (int64_t)g * g; cell++) {
            float *v = o + cell * c;
            memset(v, 0, sizeof(float) * 4 * reg);
            for (int k = 4 * reg; k < c; k++) v[k] = -12.0f;
        }
        if (h == head) {
            int cls = ((int)floor(mean)) % ncls;
            float *v = o + ((int64_t)(g / 2) * g + g / 2) * c;
            for (int k = 0; k < 4; k++) {
                int d = dist[k] < 0 ? 0 : (dist[k] >= reg ? reg - 1 : dist[k]);
                v[k * reg + d] = 12.0f;
            }
            v[4 * reg + cls] = score;
        }
    }
}

static void op_depth(const model_t *m, unsigned char **in, unsigned char **out) {
    const tensor_t *ti = &m->in[0];
    int64_t hw = (int64_t)ti->dims[1] * ti->dims[2];
    float w0 = (float)param(m, "w0", 0.5), w1 = (float)param(m, "w1", 0.3), w2 = (float)param(m, "w2", 0.2);
    const unsigned char *p = in[0];
    float *o = (float *)out[0];
    for (int64_t i = 0; i < hw; i++) o[i] = (w0 * p[3 * i] + w1 * p[3 * i + 1] + w2 * p[3 * i + 2]) / 255.0f;
}

static void op_wenc(const model_t *m, unsigned char **in, unsigned char **out) {
    const tensor_t *ti = &m->in[0];
    const float *mel = (const float *)in[0];
    double s = 0;
    for (uint64_t i = 0; i < ti->elems; i++) s += fabs((double)mel[i]);
    double mean = ti->elems ? s / (double)ti->elems : 0.0;
    for (int k = 0; k < 2; k++) {
        const tensor_t *t = &m->out[k];
        int L = t->dims[0];
        uint64_t per = t->elems / (uint64_t)L;
        float *o = (float *)out[k];
        for (int l = 0; l < L; l++) {
            float v = (float)(1.0 + l + floor(mean * 64.0) / 64.0);
            if (k == 1) v = -v;
            for (uint64_t i = 0; i < per; i++) o[(uint64_t)l * per + i] = v;
        }
    }
}

/* value the decoder writes into this_self_k row of layer l for position `offset` (every element except element 1,
 * which holds the token); this_self_v is the negative. Exact in float32 for offset < 2^17 and l < 64. */
static float kv_value(int32_t offset, int l) { return (float)(1 + 64 * offset + l); }

static void op_wdec(const model_t *m, unsigned char **in, unsigned char **out) {
    const int i_tok = find_tensor(m->in, m->n_in, "tokens"), i_sk = find_tensor(m->in, m->n_in, "self_k"),
              i_sv = find_tensor(m->in, m->n_in, "self_v"), i_ck = find_tensor(m->in, m->n_in, "cross_k"),
              i_cv = find_tensor(m->in, m->n_in, "cross_v"), i_off = find_tensor(m->in, m->n_in, "offset"),
              i_mask = find_tensor(m->in, m->n_in, "mask");
    const int o_log = find_tensor(m->out, m->n_out, "logits"), o_tk = find_tensor(m->out, m->n_out, "this_self_k"),
              o_tv = find_tensor(m->out, m->n_out, "this_self_v");
    const tensor_t *sk = &m->in[i_sk], *ck = &m->in[i_ck];
    const int L = sk->dims[0], C = sk->dims[2], D = sk->dims[3];
    const int A = ck->dims[2];
    const int32_t token = *(const int32_t *)in[i_tok];
    int32_t offset = *(const int32_t *)in[i_off];
    if (offset < 0) offset = 0;
    if (offset >= C) offset = C - 1;
    const int32_t *mask = (const int32_t *)in[i_mask];
    const float *self_k = (const float *)in[i_sk], *self_v = (const float *)in[i_sv];
    const float *cross_k = (const float *)in[i_ck], *cross_v = (const float *)in[i_cv];
    int ok = 1;
    /* mask: positions < offset visible (0), the rest masked (1) */
    for (int p = 0; p < C && ok; p++) ok = mask[p] == (p < offset ? 0 : 1);
    /* cross K/V: what the encoder wrote (nonzero, v = -k) at the first and last element of every layer */
    for (int l = 0; l < L && ok; l++) {
        uint64_t first = (uint64_t)l * A * D, last = first + (uint64_t)A * D - 1;
        ok = cross_k[first] != 0.0f && cross_v[first] == -cross_k[first] && cross_k[last] == cross_k[first] &&
             cross_v[last] == cross_v[first];
    }
    /* self K/V rows p < offset: written by the caller from this_self_* of the step at offset p */
    for (int l = 0; l < L && ok; l++) {
        for (int p = 0; p < offset && ok; p++) {
            const float *rk = self_k + ((uint64_t)l * C + p) * D, *rv = self_v + ((uint64_t)l * C + p) * D;
            const float want = kv_value(p, l);
            ok = rk[0] == want && rk[D - 1] == want && rv[0] == -want && rv[D - 1] == -want;
        }
    }
    /* logits: successor of `token` in the sequence (then eot), or the first sequence token; `bad` when corrupt */
    const tensor_t *tl = &m->out[o_log];
    const int V = (int)tl->elems;
    int eot = (int)param(m, "eot", V - 1), bad = (int)param(m, "bad", 0);
    int next = m->n_ints > 0 ? m->ints[0] : eot;
    if (token == eot) next = eot;
    for (int i = 0; i < m->n_ints; i++)
        if (m->ints[i] == token) next = i + 1 < m->n_ints ? m->ints[i + 1] : eot;
    if (!ok) next = bad;
    float *logits = (float *)out[o_log];
    for (int j = 0; j < V; j++) logits[j] = -1.0f - 0.001f * (float)j;
    if (next >= 0 && next < V) logits[next] = 30.0f;
    float *tk = (float *)out[o_tk], *tv = (float *)out[o_tv];
    for (int l = 0; l < L; l++) {
        float v = kv_value(offset, l);
        for (int d = 0; d < D; d++) {
            tk[(uint64_t)l * D + d] = d == 1 ? (float)token : v;
            tv[(uint64_t)l * D + d] = d == 1 ? -(float)token : -v;
        }
    }
}

/* ---- LLM layer / post (AXERA's per-layer decoder contract, bf16) ---------------------------------------------------
 * Token tag of a hidden row: x[0] + 128*x[3] + 16384*x[4] (each < 128, exact in bf16); x[1] counts the layers the
 * row went through; x[2] != 0 marks a row that saw a wrong cache, mask or position. A layer at position p writes
 * K row = {layer+1, p%128, p/128, tag%128...}, V row = -K row, passes the hidden row on with x[1]+1, and checks the
 * state the caller keeps on the device: indices consecutive, mask (0 visible / -65536 masked: decode group 0
 * [1,1,C+1] visible j<p and the last slot; prefill [1,T,C+T] visible j<start and causal in the chunk), and every
 * visible cache row written by this layer at that position. The post model's winning logit is the successor of
 * the tag in "ints seq" (then eot; seq[0] for other tags), or "bad" when the row was marked or missed a layer. */
static float bf2f(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint16_t f2bf(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

#define BF_MASKED 0xC780u /* -65536 */

static void op_llm_layer(const model_t *m, uint32_t g, unsigned char **in, unsigned char **out) {
    const int ix = find_tensor(m->in, m->n_in, "input"), ii = find_tensor(m->in, m->n_in, "indices"),
              ik = find_tensor(m->in, m->n_in, "K_cache"), iv = find_tensor(m->in, m->n_in, "V_cache"),
              im = find_tensor(m->in, m->n_in, "mask");
    const int ok_ = find_tensor(m->out, m->n_out, "K_cache_out"), ov = find_tensor(m->out, m->n_out, "V_cache_out"),
              oo = find_tensor(m->out, m->n_out, "output");
    const int T = m->gin[g][ix].dims[1], H = m->gin[g][ix].dims[2];
    const int C = m->gin[g][ik].dims[1], D = m->gin[g][ik].dims[2], M = m->gin[g][im].dims[2];
    const int layer = (int)param(m, "layer", 0);
    const uint16_t *x = (const uint16_t *)in[ix], *kc = (const uint16_t *)in[ik], *vc = (const uint16_t *)in[iv];
    const uint16_t *mask = (const uint16_t *)in[im];
    const uint32_t *pos = (const uint32_t *)in[ii];
    uint16_t *ko = (uint16_t *)out[ok_], *vo = (uint16_t *)out[ov], *y = (uint16_t *)out[oo];
    const uint32_t start = pos[0];
    int ok = 1;
    for (int t = 1; t < T && ok; t++) ok = pos[t] == start + (uint32_t)t;
    for (int t = 0; t < T && ok; t++) {
        const uint32_t p = pos[t];
        const uint16_t *row = mask + (uint64_t)t * M;
        for (int j = 0; j < C && ok; j++) {
            int visible = g == 0 ? (uint32_t)j < p : (uint32_t)j < start;
            ok = row[j] == (visible ? 0 : BF_MASKED);
        }
        for (int j = C; j < M && ok; j++) ok = row[j] == ((g == 0 || j - C <= t) ? 0 : BF_MASKED);
    }
    const uint32_t seen = start; /* cache rows before the first position of this call */
    if (seen > (uint32_t)C) ok = 0;
    for (uint32_t j = 0; j < seen && j < (uint32_t)C && ok; j++) {
        const uint16_t *rk = kc + (uint64_t)j * D, *rv = vc + (uint64_t)j * D;
        ok = bf2f(rk[0]) == (float)(layer + 1) && bf2f(rk[1]) == (float)(j % 128) &&
             bf2f(rk[2]) == (float)(j / 128) && bf2f(rv[0]) == -(float)(layer + 1);
    }
    /* outputs last: K_cache_out may share memory with K_cache (in-place write at row p) */
    for (int t = 0; t < T; t++) {
        const uint16_t *xr = x + (uint64_t)t * H;
        uint16_t *yr = y + (uint64_t)t * H;
        uint16_t tag = xr[0];
        float k[4] = { (float)(layer + 1), (float)(pos[t] % 128), (float)(pos[t] / 128), bf2f(tag) };
        for (int d = 0; d < D; d++) {
            float v = d < 4 ? k[d] : bf2f(tag);
            ko[(uint64_t)t * D + d] = f2bf(v);
            vo[(uint64_t)t * D + d] = f2bf(-v);
        }
        memmove(yr, xr, (size_t)H * 2);
        yr[1] = f2bf(bf2f(xr[1]) + 1.0f);
        if (!ok) yr[2] = f2bf(1.0f);
    }
}

static void op_llm_post(const model_t *m, unsigned char **in, unsigned char **out) {
    const uint16_t *x = (const uint16_t *)in[0];
    const int V = (int)param(m, "vocab", (double)m->out[0].elems);
    int layers = (int)param(m, "layers", 0), eot = (int)param(m, "eot", V - 1), bad = (int)param(m, "bad", 0);
    int tag = (int)bf2f(x[0]) + 128 * (int)bf2f(x[3]) + 16384 * (int)bf2f(x[4]);
    int next = m->n_ints > 0 ? m->ints[0] : eot;
    if (tag == eot) next = eot;
    for (int i = 0; i < m->n_ints; i++)
        if (m->ints[i] == tag) next = i + 1 < m->n_ints ? m->ints[i + 1] : eot;
    if (bf2f(x[2]) != 0.0f || (int)bf2f(x[1]) != layers) next = bad;
    if (m->n_out == 1) { /* full logits: winner 30, others -1 */
        uint16_t *lg = (uint16_t *)out[0];
        const uint16_t lo = f2bf(-1.0f), hi = f2bf(30.0f);
        for (uint64_t j = 0; j < m->out[0].elems; j++) lg[j] = lo;
        if (next >= 0 && (uint64_t)next < m->out[0].elems) lg[next] = hi;
    } else { /* top-k (Pulsar2 --post_topk): values descending + their token ids */
        uint16_t *val = (uint16_t *)out[0];
        int32_t *idx = (int32_t *)out[1];
        for (uint64_t j = 0; j < m->out[0].elems; j++) {
            int id = (int)(((uint64_t)next + j) % (uint64_t)V);
            val[j] = f2bf(j == 0 ? 30.0f : -1.0f);
            idx[j] = id;
        }
    }
}

/* vision encoder stand-in: every output row n is {tag, 0, 0, 0, 0, n, n, ...} with tag = floor(mean input) mod 128
 * (u8 input: mean byte; fp32 input: mean value * 16) -- rows that the LLM stub layers pass through untouched */
static void op_vit(const model_t *m, unsigned char **in, unsigned char **out) {
    double s = 0;
    const tensor_t *ti = &m->in[0];
    for (uint64_t i = 0; i < ti->elems; i++)
        s += ti->dtype == DT_UINT8 ? (double)in[0][i] : 16.0 * (double)((const float *)in[0])[i];
    int tag = ((int)floor(ti->elems ? s / (double)ti->elems : 0.0) % 128 + 128) % 128;
    const int N = m->out[0].dims[1], H = m->out[0].dims[2];
    uint16_t *y = (uint16_t *)out[0];
    for (int n = 0; n < N; n++)
        for (int h = 0; h < H; h++) y[(uint64_t)n * H + h] = f2bf(h == 0 ? (float)tag : (h < 5 ? 0.0f : (float)n));
}

static void run_op(const model_t *m, uint32_t group, unsigned char **in, unsigned char **out) {
    switch (m->op) {
    case OP_COPY:
        for (int i = 0; i < m->n_out; i++) {
            const tensor_t *to = &m->out[i];
            size_t nb = dtype_bytes(to->dtype, to->elems);
            memset(out[i], 0, nb);
            if (i < m->n_in) {
                size_t ni = dtype_bytes(m->in[i].dtype, m->in[i].elems);
                memcpy(out[i], in[i], ni < nb ? ni : nb);
            }
        }
        break;
    case OP_AFFINE: {
        float a = (float)param(m, "a", 1.0), b = (float)param(m, "b", 0.0);
        const float *x = (const float *)in[0];
        float *y = (float *)out[0];
        for (uint64_t i = 0; i < m->in[0].elems; i++) y[i] = a * x[i] + b;
        break;
    }
    case OP_YOLO: op_yolo(m, in, out); break;
    case OP_DEPTH: op_depth(m, in, out); break;
    case OP_WENC: op_wenc(m, in, out); break;
    case OP_WDEC: op_wdec(m, in, out); break;
    case OP_LLM_LAYER: op_llm_layer(m, group, in, out); break;
    case OP_LLM_POST: op_llm_post(m, in, out); break;
    case OP_VIT: op_vit(m, in, out); break;
    default: break;
    }
}

/* ---- teardown helpers -------------------------------------------------------------------------------------------- */
static void reclaim_device(int32_t device) {
    for (size_t i = 0; i < g_nblocks;) {
        if (g_blocks[i].device == device) {
            g_c.reclaimed_at_teardown++;
            free_block_at(i);
        } else {
            i++;
        }
    }
    for (model_t *m = g_models; m;) {
        model_t *next = m->next;
        if (m->device == device) {
            g_c.reclaimed_at_teardown++;
            free_model(m);
        }
        m = next;
    }
    for (info_t *i = g_infos; i;) {
        info_t *next = i->next;
        if (i->device == device) {
            g_c.reclaimed_at_teardown++;
            free_info(i);
        }
        i = next;
    }
    for (io_t *io = g_ios; io;) {
        io_t *next = io->next;
        if (io->device == device) {
            g_c.reclaimed_at_teardown++;
            free_io(io);
        }
        io = next;
    }
}

static void reclaim_all(void) {
    for (int i = 0; i < g_ndev; i++) reclaim_device(g_dev[i].id);
    while (g_nblocks) {
        g_c.reclaimed_at_teardown++;
        free_block_at(0);
    }
    while (g_models) {
        g_c.reclaimed_at_teardown++;
        free_model(g_models);
    }
    while (g_infos) {
        g_c.reclaimed_at_teardown++;
        free_info(g_infos);
    }
    while (g_ios) {
        g_c.reclaimed_at_teardown++;
        free_io(g_ios);
    }
    for (ctx_t *c = g_ctxs; c; c = c->next) destroy_ctx(c);
    while (g_streams) {
        stream_t *st = g_streams;
        g_streams = st->next;
        st->magic = 0;
        free(st);
        g_c.outstanding_streams--;
        g_c.reclaimed_at_teardown++;
    }
}

/* =================================================================================================================
 * Documented entry points
 * ================================================================================================================= */
#define LOCKED_ENTER(fn)                     \
    const int _fn = FN_##fn;                 \
    pthread_mutex_lock(&g_mu);               \
    axclError _rc = enter(_fn);              \
    if (_rc) {                               \
        pthread_mutex_unlock(&g_mu);         \
        return _rc;                          \
    }
#define RETURN(v)                            \
    do {                                     \
        axclError _r = (v);                  \
        if (_r) {                            \
            g_c.failed_calls++;              \
            vlog("E", fn_names[_fn], "failed with 0x%08X", (unsigned)_r); \
        }                                    \
        pthread_mutex_unlock(&g_mu);         \
        return _r;                           \
    } while (0)
#define NEED_INIT() \
    if (!g_inited) RETURN(ERR_NOT_INIT)
#define NEED_CTX(c)          \
    ctx_t *c = cur_ctx();    \
    if (!g_inited) RETURN(ERR_NOT_INIT); \
    if (!c) RETURN(ERR_NO_CONTEXT)

EXPORT axclError axclInit(const char *config) {
    const int _fn = FN_axclInit;
    pthread_mutex_lock(&g_mu);
    if (config && *config) vlog("I", "config", "load config %s", config);
    g_calls[FN_axclInit]++;
    g_log[g_log_n++ % LOG_LEN] = FN_axclInit;
    g_c.total_calls++;
    if (g_inited) RETURN(0);
    if (env_long("AXCL_STUB_NO_CARD", 0) == 1) { /* what libaxcl_rt.so does on a host without a card or driver */
        vlog("E", "device manager", "open /dev/axcl_host fail, errno: 2 No such file or directory");
        RETURN(ERR(SUB_DEVICE, E_OPEN));
    }
    g_inited = 1;
    g_lost = 0;
    g_c.calls_since_init = 0;
    const char *link = getenv("AXCL_STUB_LINK");
    g_link = link && *link && strcmp(link, "off") != 0;
    g_h2d_bpus = (double)env_long("AXCL_STUB_H2D_MBPS", 375);
    g_d2h_bpus = (double)env_long("AXCL_STUB_D2H_MBPS", 435);
    g_xfer_lat_us = env_long("AXCL_STUB_XFER_LATENCY_US", 50);
    g_exec_us = env_long("AXCL_STUB_EXEC_US", 0);
    g_ndev = 0;
    const char *ids = getenv("AXCL_STUB_DEVICE_IDS");
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", (ids && *ids) ? ids : "129");
    char *save = NULL;
    for (char *t = strtok_r(buf, ", ", &save); t && g_ndev < MAX_DEVICES; t = strtok_r(NULL, ", ", &save)) {
        memset(&g_dev[g_ndev], 0, sizeof(device_t));
        g_dev[g_ndev++].id = atoi(t);
    }
    g_c.initialized = 1;
    g_c.device_lost = 0;
    RETURN(0);
}

EXPORT axclError axclFinalize(void) {
    const int _fn = FN_axclFinalize;
    (void)_fn;
    pthread_mutex_lock(&g_mu);
    g_calls[FN_axclFinalize]++;
    g_log[g_log_n++ % LOG_LEN] = FN_axclFinalize;
    g_c.total_calls++;
    reclaim_all();
    g_inited = 0;
    g_lost = 0;
    g_ndev = 0;
    g_c.initialized = 0;
    RETURN(0);
}

EXPORT axclError axclSetLogLevel(int32_t lv) {
    LOCKED_ENTER(axclSetLogLevel);
    RETURN((lv < 0 || lv > 6) ? ERR(SUB_CONFIG, E_PARAM) : 0);
}

EXPORT axclError axclrtGetVersion(int32_t *major, int32_t *minor, int32_t *patch) {
    LOCKED_ENTER(axclrtGetVersion);
    if (!major || !minor || !patch) RETURN(ERR(SUB_DEVICE, E_NULL));
    *major = 3; /* the API level this stub models (V3.10.2 headers as documented) */
    *minor = 10;
    *patch = 2;
    RETURN(0);
}

EXPORT const char *axclrtGetFullVersion(void) {
    pthread_mutex_lock(&g_mu);
    axclError rc = enter(FN_axclrtGetFullVersion);
    pthread_mutex_unlock(&g_mu);
    return rc ? NULL : "axcl_stub (test double of the documented AXCL V3.10.2 Runtime API)";
}

/* reads the chip type on the card: needs a current context; without one the real library logs and says UNKNOWN */
EXPORT const char *axclrtGetSocName(void) {
    pthread_mutex_lock(&g_mu);
    axclError rc = enter(FN_axclrtGetSocName);
    int have_ctx = g_inited && cur_ctx() != NULL;
    if (!rc && !have_ctx) vlog("E", "axclrtGetSocName", "no context is bound to the current thread");
    pthread_mutex_unlock(&g_mu);
    return rc ? NULL : (have_ctx ? "AX650N-STUB" : "UNKNOWN");
}

EXPORT axclError axclrtSetDevice(int32_t id) {
    LOCKED_ENTER(axclrtSetDevice);
    NEED_INIT();
    device_t *d = find_device(id);
    if (!d) RETURN(ERR(SUB_DEVICE, E_INVALID_DEVICE));
    if (!d->default_ctx || d->default_ctx->destroyed) {
        d->default_ctx = new_ctx(id);
        if (!d->default_ctx) RETURN(ERR(SUB_DEVICE, E_NOMEM));
    }
    d->set_refs++;
    t_cur = d->default_ctx;
    RETURN(0);
}

EXPORT axclError axclrtResetDevice(int32_t id) {
    LOCKED_ENTER(axclrtResetDevice);
    NEED_INIT();
    device_t *d = find_device(id);
    if (!d) RETURN(ERR(SUB_DEVICE, E_INVALID_DEVICE));
    if (d->set_refs > 0) d->set_refs--;
    if (d->set_refs == 0) {
        reclaim_device(id);
        for (ctx_t *c = g_ctxs; c; c = c->next)
            if (c->device == id) destroy_ctx(c);
        d->default_ctx = NULL;
        d->engine_inited = 0;
    }
    RETURN(0);
}

EXPORT axclError axclrtGetDevice(int32_t *id) {
    LOCKED_ENTER(axclrtGetDevice);
    if (!id) RETURN(ERR(SUB_DEVICE, E_NULL));
    NEED_CTX(c);
    *id = c->device;
    RETURN(0);
}

EXPORT axclError axclrtGetDeviceCount(uint32_t *count) {
    LOCKED_ENTER(axclrtGetDeviceCount);
    if (!count) RETURN(ERR(SUB_DEVICE, E_NULL));
    NEED_INIT();
    *count = (uint32_t)g_ndev;
    RETURN(0);
}

EXPORT axclError axclrtGetDeviceList(axclrtDeviceList *list) {
    LOCKED_ENTER(axclrtGetDeviceList);
    if (!list) RETURN(ERR(SUB_DEVICE, E_NULL));
    memset(list, 0, sizeof(*list)); /* before a successful axclInit: success with num = 0 (as the real library) */
    list->num = (uint32_t)g_ndev;
    for (int i = 0; i < g_ndev; i++) list->devices[i] = g_dev[i].id;
    RETURN(0);
}

EXPORT axclError axclrtSynchronizeDevice(void) {
    LOCKED_ENTER(axclrtSynchronizeDevice);
    NEED_CTX(c);
    (void)c;
    RETURN(0);
}

EXPORT axclError axclrtGetDeviceProperties(int32_t id, axclrtDeviceProperties *p) {
    /* the real call runs several shell commands on the card: slow (AXCL_STUB_PROPERTIES_US, default 50 ms) */
    sleep_us(env_long("AXCL_STUB_PROPERTIES_US", 50000));
    LOCKED_ENTER(axclrtGetDeviceProperties);
    if (!p) RETURN(ERR(SUB_DEVICE, E_NULL));
    NEED_INIT();
    if (!find_device(id)) RETURN(ERR(SUB_DEVICE, E_INVALID_DEVICE));
    memset(p, 0, sizeof(*p));
    snprintf(p->swVersion, sizeof(p->swVersion), "V0.0.0-stub");
    p->uid = 0x5700000000000000ull | (uint64_t)(uint32_t)id;
    p->pciBusID = (uint32_t)id;
    p->temperature = 40000 + 100 * (id % 100); /* milli-degC, as the stub's own convention */
    p->totalMemSize = 945u * 1024u;
    p->freeMemSize = 600u * 1024u;
    p->totalCmmSize = 7040u * 1024u;
    uint64_t used = 0;
    for (size_t i = 0; i < g_nblocks; i++)
        if (g_blocks[i].device == id) used += g_blocks[i].size;
    uint64_t used_kb = (used + 1023) / 1024;
    p->freeCmmSize = used_kb > p->totalCmmSize ? 0 : p->totalCmmSize - (uint32_t)used_kb;
    p->cpuLoading = 1234;                                         /* 12.34 % in 0.01 % units */
    p->npuLoading = (uint32_t)(g_c.executes % 10001u);            /* varies with use */
    RETURN(0);
}

EXPORT axclError axclrtCreateContext(axclrtContext *ctx, int32_t id) {
    LOCKED_ENTER(axclrtCreateContext);
    if (!ctx) RETURN(ERR(SUB_CONTEXT, E_NULL));
    NEED_INIT();
    if (!find_device(id)) RETURN(ERR(SUB_DEVICE, E_INVALID_DEVICE));
    ctx_t *c = new_ctx(id);
    if (!c) RETURN(ERR(SUB_CONTEXT, E_NOMEM));
    t_cur = c;
    *ctx = c;
    RETURN(0);
}

EXPORT axclError axclrtDestroyContext(axclrtContext ctx) {
    LOCKED_ENTER(axclrtDestroyContext);
    NEED_INIT();
    ctx_t *c = (ctx_t *)ctx;
    if (!c || !ctx_valid(c)) RETURN(ERR(SUB_CONTEXT, E_PARAM));
    destroy_ctx(c);
    if (t_cur == c) t_cur = NULL;
    RETURN(0);
}

EXPORT axclError axclrtSetCurrentContext(axclrtContext ctx) {
    LOCKED_ENTER(axclrtSetCurrentContext);
    NEED_INIT();
    ctx_t *c = (ctx_t *)ctx;
    if (!c || !ctx_valid(c)) RETURN(ERR(SUB_CONTEXT, E_PARAM));
    t_cur = c;
    RETURN(0);
}

EXPORT axclError axclrtGetCurrentContext(axclrtContext *ctx) {
    LOCKED_ENTER(axclrtGetCurrentContext);
    if (!ctx) RETURN(ERR(SUB_CONTEXT, E_NULL));
    NEED_CTX(c);
    *ctx = c;
    RETURN(0);
}

static axclError do_malloc(void **p, size_t size) {
    ctx_t *c = cur_ctx();
    if (!g_inited) return ERR_NOT_INIT;
    if (!c) return ERR_NO_CONTEXT;
    if (!p) return ERR(SUB_MEMORY, E_NULL);
    if (size == 0) return ERR(SUB_MEMORY, E_PARAM);
    if (g_nblocks == g_capblocks) {
        size_t cap = g_capblocks ? 2 * g_capblocks : 64;
        block_t *nb = realloc(g_blocks, cap * sizeof(block_t));
        if (!nb) return ERR(SUB_MEMORY, E_NOMEM);
        g_blocks = nb;
        g_capblocks = cap;
    }
    unsigned char *host = malloc(size);
    if (!host) return ERR(SUB_MEMORY, E_NOMEM);
    /* device memory is not zeroed (callers memset); fill with a pattern so reads of unset bytes are visible */
    memset(host, 0xA5, size);
    block_t *b = &g_blocks[g_nblocks++];
    b->addr = g_next_addr;
    b->size = size;
    b->host = host;
    b->device = c->device;
    g_next_addr += ((size + 0xFFFu) & ~(uint64_t)0xFFFu) + 0x1000u; /* 4 KiB aligned, one guard page */
    g_c.outstanding_allocs++;
    g_c.outstanding_bytes += (int64_t)size;
    *p = (void *)(uintptr_t)b->addr;
    return 0;
}

EXPORT axclError axclrtMalloc(void **p, size_t size, int32_t policy) {
    LOCKED_ENTER(axclrtMalloc);
    (void)policy;
    RETURN(do_malloc(p, size));
}

EXPORT axclError axclrtMallocCached(void **p, size_t size, int32_t policy) {
    LOCKED_ENTER(axclrtMallocCached);
    (void)policy;
    RETURN(do_malloc(p, size));
}

EXPORT axclError axclrtFree(void *p) {
    LOCKED_ENTER(axclrtFree);
    NEED_CTX(c);
    uint64_t a = (uint64_t)(uintptr_t)p;
    for (size_t i = 0; i < g_nblocks; i++) {
        if (g_blocks[i].addr == a) {
            if (g_blocks[i].device != c->device) RETURN(ERR(SUB_MEMORY, E_PARAM));
            free_block_at(i);
            RETURN(0);
        }
    }
    RETURN(ERR(SUB_MEMORY, E_PARAM));
}

EXPORT axclError axclrtMallocHost(void **p, size_t size) {
    LOCKED_ENTER(axclrtMallocHost);
    NEED_CTX(c);
    (void)c;
    if (!p) RETURN(ERR(SUB_MEMORY, E_NULL));
    if (!size) RETURN(ERR(SUB_MEMORY, E_PARAM));
    *p = malloc(size);
    if (!*p) RETURN(ERR(SUB_MEMORY, E_NOMEM));
    g_c.outstanding_host_allocs++;
    RETURN(0);
}

EXPORT axclError axclrtFreeHost(void *p) {
    LOCKED_ENTER(axclrtFreeHost);
    NEED_CTX(c);
    (void)c;
    if (!p) RETURN(ERR(SUB_MEMORY, E_NULL));
    if (in_dev_space((uint64_t)(uintptr_t)p)) RETURN(ERR(SUB_MEMORY, E_PARAM));
    free(p);
    g_c.outstanding_host_allocs--;
    RETURN(0);
}

EXPORT axclError axclrtMemset(void *dev, uint8_t value, size_t count) {
    LOCKED_ENTER(axclrtMemset);
    NEED_CTX(c);
    if (!dev) RETURN(ERR(SUB_MEMORY, E_NULL));
    unsigned char *h = dev_host((uint64_t)(uintptr_t)dev, count, c->device);
    if (!h) RETURN(ERR(SUB_MEMORY, E_PARAM));
    memset(h, value, count);
    g_c.memset_bytes += count;
    g_c.memset_calls++;
    RETURN(0);
}

/* checks and moves the data of a copy (lock held); *dir gets 1 for H2D, 2 for D2H, 0 otherwise */
static axclError do_memcpy(ctx_t *c, void *dst, const void *src, size_t count, int32_t kind, int *dir) {
    *dir = 0;
    if (!dst || !src) return ERR(SUB_MEMORY, E_NULL);
    uint64_t d = (uint64_t)(uintptr_t)dst, s = (uint64_t)(uintptr_t)src;
    unsigned char *hd = NULL;
    const unsigned char *hs = NULL;
    switch (kind) {
    case K_H2H:
        if (in_dev_space(d) || in_dev_space(s)) return ERR(SUB_MEMORY, E_PARAM);
        hd = dst;
        hs = src;
        g_c.h2h_bytes += count;
        g_c.h2h_calls++;
        break;
    case K_H2D:
        if (in_dev_space(s)) return ERR(SUB_MEMORY, E_PARAM);
        hd = dev_host(d, count, c->device);
        hs = src;
        if (!hd) return ERR(SUB_MEMORY, E_PARAM);
        g_c.h2d_bytes += count;
        g_c.h2d_calls++;
        *dir = 1;
        break;
    case K_D2H:
        if (in_dev_space(d)) return ERR(SUB_MEMORY, E_PARAM);
        hs = dev_host(s, count, c->device);
        hd = dst;
        if (!hs) return ERR(SUB_MEMORY, E_PARAM);
        g_c.d2h_bytes += count;
        g_c.d2h_calls++;
        *dir = 2;
        break;
    case K_D2D:
        hd = dev_host(d, count, c->device);
        hs = dev_host(s, count, c->device);
        if (!hd || !hs) return ERR(SUB_MEMORY, E_PARAM);
        g_c.d2d_bytes += count;
        g_c.d2d_calls++;
        break;
    default:
        return ERR(SUB_MEMORY, E_UNSUPPORTED);
    }
    memmove(hd, hs, count);
    return 0;
}

/* link model: end time of a copy in direction dir on the stream with tail *tail (lock held; 0 when no link model) */
static uint64_t link_copy(ctx_t *c, int dir, size_t count, uint64_t *tail) {
    device_t *dv = find_device(c->device);
    if (!g_link || !dv || !dir) return 0;
    double bpus = dir == 1 ? g_h2d_bpus : g_d2h_bpus;
    uint64_t dur = (uint64_t)g_xfer_lat_us + (uint64_t)((double)count / (bpus > 0 ? bpus : 1.0));
    return link_schedule(dir == 1 ? &dv->h2d_free : &dv->d2h_free, tail, dur);
}

EXPORT axclError axclrtMemcpy(void *dst, const void *src, size_t count, int32_t kind) {
    LOCKED_ENTER(axclrtMemcpy);
    NEED_CTX(c);
    int dir = 0;
    axclError rc = do_memcpy(c, dst, src, count, kind, &dir);
    if (rc) RETURN(rc);
    uint64_t end = link_copy(c, dir, count, &t_sync_tail);
    pthread_mutex_unlock(&g_mu);
    sleep_until_us(end);
    return 0;
}

static stream_t *as_stream(axclrtStream h) {
    for (stream_t *st = g_streams; st; st = st->next)
        if (st == (stream_t *)h) return st->magic == STREAM_MAGIC ? st : NULL;
    return NULL;
}

EXPORT axclError axclrtCreateStream(axclrtStream *out) {
    LOCKED_ENTER(axclrtCreateStream);
    if (!out) RETURN(ERR(SUB_STREAM, E_NULL));
    NEED_CTX(c);
    stream_t *st = calloc(1, sizeof(*st));
    if (!st) RETURN(ERR(SUB_STREAM, E_NOMEM));
    st->magic = STREAM_MAGIC;
    st->device = c->device;
    st->next = g_streams;
    g_streams = st;
    g_c.outstanding_streams++;
    *out = st;
    RETURN(0);
}

EXPORT axclError axclrtDestroyStream(axclrtStream h) {
    LOCKED_ENTER(axclrtDestroyStream);
    NEED_CTX(c);
    (void)c;
    stream_t *st = as_stream(h);
    if (!st) RETURN(ERR(SUB_STREAM, E_PARAM));
    stream_t **pp = &g_streams;
    while (*pp && *pp != st) pp = &(*pp)->next;
    if (*pp) *pp = st->next;
    st->magic = 0;
    free(st);
    g_c.outstanding_streams--;
    RETURN(0);
}

EXPORT axclError axclrtSynchronizeStream(axclrtStream h) {
    LOCKED_ENTER(axclrtSynchronizeStream);
    NEED_CTX(c);
    (void)c;
    stream_t *st = as_stream(h);
    if (!st) RETURN(ERR(SUB_STREAM, E_PARAM));
    uint64_t end = st->tail;
    pthread_mutex_unlock(&g_mu);
    sleep_until_us(end);
    return 0;
}

EXPORT axclError axclrtMemcpyAsync(void *dst, const void *src, size_t count, int32_t kind, axclrtStream h) {
    LOCKED_ENTER(axclrtMemcpyAsync);
    NEED_CTX(c);
    stream_t *st = as_stream(h);
    if (!st || st->device != c->device) RETURN(ERR(SUB_STREAM, E_PARAM));
    int dir = 0;
    axclError rc = do_memcpy(c, dst, src, count, kind, &dir);
    if (rc) RETURN(rc);
    link_copy(c, dir, count, &st->tail);
    g_c.async_ops++;
    RETURN(0);
}

/* ---- engine -------------------------------------------------------------------------------------------------- */
static device_t *cur_device(ctx_t *c) { return c ? find_device(c->device) : NULL; }

EXPORT axclError axclrtEngineInit(int32_t kind) {
    LOCKED_ENTER(axclrtEngineInit);
    NEED_CTX(c);
    device_t *d = cur_device(c);
    if (!d) RETURN(ERR(SUB_DEVICE, E_INVALID_DEVICE));
    if (kind < 0 || kind > 3) RETURN(ERR(SUB_ENGINE, E_PARAM));
    if (d->engine_inited) RETURN(ERR(SUB_ENGINE, E_BUSY)); /* already initialised */
    d->engine_inited = 1;
    d->vnpu = kind;
    RETURN(0);
}

EXPORT axclError axclrtEngineGetVNpuKind(int32_t *kind) {
    LOCKED_ENTER(axclrtEngineGetVNpuKind);
    if (!kind) RETURN(ERR(SUB_ENGINE, E_NULL));
    NEED_CTX(c);
    device_t *d = cur_device(c);
    if (!d || !d->engine_inited) RETURN(ERR(SUB_ENGINE, E_FAIL));
    *kind = d->vnpu;
    RETURN(0);
}

EXPORT axclError axclrtEngineFinalize(void) {
    LOCKED_ENTER(axclrtEngineFinalize);
    NEED_CTX(c);
    device_t *d = cur_device(c);
    if (!d || !d->engine_inited) RETURN(ERR(SUB_ENGINE, E_FAIL));
    d->engine_inited = 0;
    RETURN(0);
}

static int vnpu_max_cores(int kind) { return kind == 0 ? 3 : (kind == 1 ? 1 : 2); }

EXPORT axclError axclrtEngineLoadFromFile(const char *path, uint64_t *model_id) {
    LOCKED_ENTER(axclrtEngineLoadFromFile);
    if (!path || !model_id) RETURN(ERR(SUB_ENGINE, E_NULL));
    NEED_CTX(c);
    device_t *d = cur_device(c);
    if (!d || !d->engine_inited) RETURN(ERR(SUB_ENGINE, E_FAIL));
    if (env_long("AXCL_STUB_FAIL_LOAD", 0) == 1) {
        fprintf(stderr, "axcl_stub: injected load failure (AXCL_STUB_FAIL_LOAD=1) for %s\n", path);
        RETURN(ERR(SUB_ENGINE, E_FAIL));
    }
    sleep_us(env_long("AXCL_STUB_LOAD_US", 0));
    model_t *m = calloc(1, sizeof(*m));
    if (!m) RETURN(ERR(SUB_ENGINE, E_NOMEM));
    const char *why = "";
    axclError rc = parse_model(path, m, &why);
    if (rc) {
        free(m);
        RETURN(rc);
    }
    if (m->cores > vnpu_max_cores(d->vnpu)) {
        fprintf(stderr, "axcl_stub: %s needs %d cores, VNPU kind %d gives %d\n", path, m->cores, d->vnpu,
                vnpu_max_cores(d->vnpu));
        free(m);
        RETURN(ERR(SUB_ENGINE, E_UNSUPPORTED));
    }
    m->id = g_next_model++;
    m->device = c->device;
    m->next = g_models;
    g_models = m;
    g_c.loaded_models++;
    *model_id = m->id;
    RETURN(0);
}

EXPORT axclError axclrtEngineUnload(uint64_t model_id) {
    LOCKED_ENTER(axclrtEngineUnload);
    NEED_CTX(c);
    model_t *m = find_model(model_id);
    if (!m || m->device != c->device) RETURN(ERR(SUB_ENGINE, E_PARAM));
    free_model(m);
    RETURN(0);
}

EXPORT const char *axclrtEngineGetModelCompilerVersion(uint64_t model_id) {
    pthread_mutex_lock(&g_mu);
    axclError rc = enter(FN_axclrtEngineGetModelCompilerVersion);
    const char *v = (!rc && find_model(model_id)) ? "stub-compiler 0.0" : NULL;
    pthread_mutex_unlock(&g_mu);
    return v;
}

EXPORT axclError axclrtEngineGetModelType(const char *path, int32_t *kind) {
    LOCKED_ENTER(axclrtEngineGetModelType);
    if (!path || !kind) RETURN(ERR(SUB_ENGINE, E_NULL));
    NEED_CTX(c);
    (void)c;
    /* the real call loads the whole model (read, card alloc, copy, load, unload): it costs what a load costs */
    sleep_us(env_long("AXCL_STUB_LOAD_US", 0));
    model_t *m = calloc(1, sizeof(*m));
    if (!m) RETURN(ERR(SUB_ENGINE, E_NOMEM));
    const char *why = "";
    axclError rc = parse_model(path, m, &why);
    if (!rc) *kind = m->cores - 1;
    free(m);
    RETURN(rc);
}

EXPORT axclError axclrtEngineGetModelTypeFromModelId(uint64_t model_id, int32_t *kind) {
    LOCKED_ENTER(axclrtEngineGetModelTypeFromModelId);
    if (!kind) RETURN(ERR(SUB_ENGINE, E_NULL));
    NEED_CTX(c);
    (void)c;
    model_t *m = find_model(model_id);
    if (!m) RETURN(ERR(SUB_ENGINE, E_PARAM));
    *kind = m->cores - 1;
    RETURN(0);
}

EXPORT axclError axclrtEngineCreateContext(uint64_t model_id, uint64_t *context_id) {
    LOCKED_ENTER(axclrtEngineCreateContext);
    if (!context_id) RETURN(ERR(SUB_ENGINE, E_NULL));
    NEED_CTX(c);
    model_t *m = find_model(model_id);
    if (!m || m->device != c->device) RETURN(ERR(SUB_ENGINE, E_PARAM));
    if (m->n_ctx >= 8) RETURN(ERR(SUB_ENGINE, E_NOMEM));
    m->ctx_ids[m->n_ctx++] = g_next_ectx;
    *context_id = g_next_ectx++;
    RETURN(0);
}

EXPORT axclError axclrtEngineGetIOInfo(uint64_t model_id, axclrtEngineIOInfo *info) {
    LOCKED_ENTER(axclrtEngineGetIOInfo);
    if (!info) RETURN(ERR(SUB_ENGINE, E_NULL));
    NEED_CTX(c);
    model_t *m = find_model(model_id);
    if (!m || m->device != c->device) RETURN(ERR(SUB_ENGINE, E_PARAM));
    info_t *i = calloc(1, sizeof(*i));
    if (!i) RETURN(ERR(SUB_ENGINE, E_NOMEM));
    i->magic = INFO_MAGIC;
    i->model_id = model_id;
    i->device = m->device;
    i->n_in = m->n_in;
    i->n_out = m->n_out;
    memcpy(i->in, m->in, sizeof(m->in));
    memcpy(i->out, m->out, sizeof(m->out));
    i->n_groups = m->n_groups;
    memcpy(i->gin, m->gin, sizeof(m->gin));
    memcpy(i->gout, m->gout, sizeof(m->gout));
    i->next = g_infos;
    g_infos = i;
    g_c.outstanding_ioinfos++;
    *info = i;
    RETURN(0);
}

static info_t *as_info(axclrtEngineIOInfo h) {
    info_t *i = (info_t *)h;
    return (i && i->magic == INFO_MAGIC) ? i : NULL;
}

static io_t *as_io(axclrtEngineIO h) {
    io_t *io = (io_t *)h;
    return (io && io->magic == IO_MAGIC) ? io : NULL;
}

EXPORT axclError axclrtEngineDestroyIOInfo(axclrtEngineIOInfo h) {
    LOCKED_ENTER(axclrtEngineDestroyIOInfo);
    NEED_INIT();
    info_t *i = as_info(h);
    if (!i) RETURN(ERR(SUB_ENGINE, E_PARAM));
    free_info(i);
    RETURN(0);
}

EXPORT axclError axclrtEngineGetShapeGroupsCount(axclrtEngineIOInfo h, int32_t *count) {
    LOCKED_ENTER(axclrtEngineGetShapeGroupsCount);
    if (!count) RETURN(ERR(SUB_ENGINE, E_NULL));
    if (!as_info(h)) RETURN(ERR(SUB_ENGINE, E_PARAM));
    *count = as_info(h)->n_groups;
    RETURN(0);
}

/* Count, size and index getters return the error code itself as their value on failure (libaxcl_rt.so V3.10.2:
 * e.g. 0x80300702, seen as 0xFFFFFFFF80300702 through a 64-bit return): callers must check for the error pattern.
 * Name getters return NULL. */
#define INFO_GETTER(fn, rtype, expr)                               \
    const int _fn = FN_##fn;                                       \
    pthread_mutex_lock(&g_mu);                                     \
    axclError _e = enter(_fn);                                     \
    rtype _v = 0;                                                  \
    info_t *i = as_info(h);                                        \
    if (!_e && !h) _e = ERR(SUB_ENGINE, E_NULL);                   \
    if (!_e && !i) _e = ERR(SUB_ENGINE, E_PARAM);                  \
    if (!_e) { expr; }                                             \
    if (_e) {                                                      \
        g_c.failed_calls++;                                        \
        vlog("E", fn_names[_fn], "failed with 0x%08X", (unsigned)_e); \
        _v = (rtype)(int64_t)_e; /* sign-extends into 64-bit returns */ \
    }                                                              \
    pthread_mutex_unlock(&g_mu);                                   \
    return _v

EXPORT uint32_t axclrtEngineGetNumInputs(axclrtEngineIOInfo h) {
    INFO_GETTER(axclrtEngineGetNumInputs, uint32_t, _v = (uint32_t)i->n_in);
}

EXPORT uint32_t axclrtEngineGetNumOutputs(axclrtEngineIOInfo h) {
    INFO_GETTER(axclrtEngineGetNumOutputs, uint32_t, _v = (uint32_t)i->n_out);
}

EXPORT uint64_t axclrtEngineGetInputSizeByIndex(axclrtEngineIOInfo h, uint32_t group, uint32_t index) {
    INFO_GETTER(axclrtEngineGetInputSizeByIndex, uint64_t,
                if (group < (uint32_t)i->n_groups && index < (uint32_t)i->n_in) _v = i->gin[group][index].size;
                else _e = ERR(SUB_ENGINE, E_INVALID_INDEX));
}

EXPORT uint64_t axclrtEngineGetOutputSizeByIndex(axclrtEngineIOInfo h, uint32_t group, uint32_t index) {
    INFO_GETTER(axclrtEngineGetOutputSizeByIndex, uint64_t,
                if (group < (uint32_t)i->n_groups && index < (uint32_t)i->n_out) _v = i->gout[group][index].size;
                else _e = ERR(SUB_ENGINE, E_INVALID_INDEX));
}

#define NAME_GETTER(fn, arr, cnt)                                   \
    pthread_mutex_lock(&g_mu);                                     \
    const char *_v = NULL;                                         \
    if (!enter(FN_##fn)) {                                         \
        info_t *i = as_info(h);                                    \
        if (i && index < (uint32_t)i->cnt) _v = i->arr[index].name; \
    }                                                              \
    pthread_mutex_unlock(&g_mu);                                   \
    return _v

EXPORT const char *axclrtEngineGetInputNameByIndex(axclrtEngineIOInfo h, uint32_t index) {
    NAME_GETTER(axclrtEngineGetInputNameByIndex, in, n_in);
}

EXPORT const char *axclrtEngineGetOutputNameByIndex(axclrtEngineIOInfo h, uint32_t index) {
    NAME_GETTER(axclrtEngineGetOutputNameByIndex, out, n_out);
}

EXPORT int32_t axclrtEngineGetInputIndexByName(axclrtEngineIOInfo h, const char *name) {
    INFO_GETTER(axclrtEngineGetInputIndexByName, int32_t,
                _v = name ? find_tensor(i->in, i->n_in, name) : -1;
                if (_v < 0) _e = ERR(SUB_ENGINE, name ? E_PARAM : E_NULL));
}

EXPORT int32_t axclrtEngineGetOutputIndexByName(axclrtEngineIOInfo h, const char *name) {
    INFO_GETTER(axclrtEngineGetOutputIndexByName, int32_t,
                _v = name ? find_tensor(i->out, i->n_out, name) : -1;
                if (_v < 0) _e = ERR(SUB_ENGINE, name ? E_PARAM : E_NULL));
}

static axclError get_dims(const tensor_t (*t)[MAX_T], int n, int n_groups, uint32_t group, uint32_t index,
                          axclrtEngineIODims *dims) {
    if (!dims) return ERR(SUB_ENGINE, E_NULL);
    if (group >= (uint32_t)n_groups || index >= (uint32_t)n) return ERR(SUB_ENGINE, E_INVALID_INDEX);
    memset(dims, 0, sizeof(*dims));
    dims->dimCount = t[group][index].ndim;
    for (int k = 0; k < t[group][index].ndim; k++) dims->dims[k] = t[group][index].dims[k];
    return 0;
}

EXPORT axclError axclrtEngineGetInputDims(axclrtEngineIOInfo h, uint32_t group, uint32_t index,
                                          axclrtEngineIODims *dims) {
    LOCKED_ENTER(axclrtEngineGetInputDims);
    info_t *i = as_info(h);
    if (!i) RETURN(ERR(SUB_ENGINE, E_PARAM));
    RETURN(get_dims((const tensor_t (*)[MAX_T])i->gin, i->n_in, i->n_groups, group, index, dims));
}

EXPORT axclError axclrtEngineGetOutputDims(axclrtEngineIOInfo h, uint32_t group, uint32_t index,
                                           axclrtEngineIODims *dims) {
    LOCKED_ENTER(axclrtEngineGetOutputDims);
    info_t *i = as_info(h);
    if (!i) RETURN(ERR(SUB_ENGINE, E_PARAM));
    RETURN(get_dims((const tensor_t (*)[MAX_T])i->gout, i->n_out, i->n_groups, group, index, dims));
}

#define INFO_FIELD(fn, arr, cnt, field)                                  \
    LOCKED_ENTER(fn);                                                    \
    if (!out) RETURN(ERR(SUB_ENGINE, E_NULL));                           \
    info_t *i = as_info(h);                                              \
    if (!i) RETURN(ERR(SUB_ENGINE, E_PARAM));                            \
    if (index >= (uint32_t)i->cnt) RETURN(ERR(SUB_ENGINE, E_INVALID_INDEX)); \
    *out = i->arr[index].field;                                          \
    RETURN(0)

EXPORT axclError axclrtEngineGetInputDataType(axclrtEngineIOInfo h, uint32_t index, int32_t *out) {
    INFO_FIELD(axclrtEngineGetInputDataType, in, n_in, dtype);
}

EXPORT axclError axclrtEngineGetOutputDataType(axclrtEngineIOInfo h, uint32_t index, int32_t *out) {
    INFO_FIELD(axclrtEngineGetOutputDataType, out, n_out, dtype);
}

EXPORT axclError axclrtEngineGetInputDataLayout(axclrtEngineIOInfo h, uint32_t index, int32_t *out) {
    INFO_FIELD(axclrtEngineGetInputDataLayout, in, n_in, layout);
}

EXPORT axclError axclrtEngineGetOutputDataLayout(axclrtEngineIOInfo h, uint32_t index, int32_t *out) {
    INFO_FIELD(axclrtEngineGetOutputDataLayout, out, n_out, layout);
}

EXPORT axclError axclrtEngineCreateIO(axclrtEngineIOInfo h, axclrtEngineIO *io_out) {
    LOCKED_ENTER(axclrtEngineCreateIO);
    if (!io_out) RETURN(ERR(SUB_ENGINE, E_NULL));
    NEED_CTX(c);
    info_t *i = as_info(h);
    if (!i || i->device != c->device) RETURN(ERR(SUB_ENGINE, E_PARAM));
    io_t *io = calloc(1, sizeof(*io));
    if (!io) RETURN(ERR(SUB_ENGINE, E_NOMEM));
    io->magic = IO_MAGIC;
    io->model_id = i->model_id;
    io->device = i->device;
    io->n_in = i->n_in;
    io->n_out = i->n_out;
    /* no group yet: a buffer must hold the tensor's smallest size over the groups (Execute checks the group's) */
    for (int k = 0; k < i->n_in; k++) {
        io->need_in[k] = i->in[k].size;
        for (int g = 1; g < i->n_groups; g++)
            if (i->gin[g][k].size < io->need_in[k]) io->need_in[k] = i->gin[g][k].size;
    }
    for (int k = 0; k < i->n_out; k++) {
        io->need_out[k] = i->out[k].size;
        for (int g = 1; g < i->n_groups; g++)
            if (i->gout[g][k].size < io->need_out[k]) io->need_out[k] = i->gout[g][k].size;
    }
    io->next = g_ios;
    g_ios = io;
    g_c.outstanding_ios++;
    *io_out = io;
    RETURN(0);
}

EXPORT axclError axclrtEngineDestroyIO(axclrtEngineIO h) {
    LOCKED_ENTER(axclrtEngineDestroyIO);
    NEED_CTX(c);
    (void)c;
    io_t *io = as_io(h);
    if (!io) RETURN(ERR(SUB_ENGINE, E_PARAM));
    free_io(io);
    RETURN(0);
}

static axclError set_buffer(io_t *io, int is_in, uint32_t index, const void *buf, uint64_t size) {
    int n = is_in ? io->n_in : io->n_out;
    if (index >= (uint32_t)n) return ERR(SUB_ENGINE, E_INVALID_INDEX);
    if (!buf) return ERR(SUB_ENGINE, E_NULL);
    uint64_t need = is_in ? io->need_in[index] : io->need_out[index];
    uint64_t a = (uint64_t)(uintptr_t)buf;
    if (size < need || !dev_host(a, size, io->device)) return ERR(SUB_ENGINE, E_PARAM);
    if (is_in) {
        io->in_addr[index] = a;
        io->in_size[index] = size;
    } else {
        io->out_addr[index] = a;
        io->out_size[index] = size;
    }
    return 0;
}

EXPORT axclError axclrtEngineSetInputBufferByIndex(axclrtEngineIO h, uint32_t index, const void *buf,
                                                   uint64_t size) {
    LOCKED_ENTER(axclrtEngineSetInputBufferByIndex);
    NEED_CTX(c);
    (void)c;
    io_t *io = as_io(h);
    if (!io) RETURN(ERR(SUB_ENGINE, E_PARAM));
    RETURN(set_buffer(io, 1, index, buf, size));
}

EXPORT axclError axclrtEngineSetOutputBufferByIndex(axclrtEngineIO h, uint32_t index, const void *buf,
                                                    uint64_t size) {
    LOCKED_ENTER(axclrtEngineSetOutputBufferByIndex);
    NEED_CTX(c);
    (void)c;
    io_t *io = as_io(h);
    if (!io) RETURN(ERR(SUB_ENGINE, E_PARAM));
    RETURN(set_buffer(io, 0, index, buf, size));
}

EXPORT axclError axclrtEngineGetInputBufferByIndex(axclrtEngineIO h, uint32_t index, void **buf, uint64_t *size) {
    LOCKED_ENTER(axclrtEngineGetInputBufferByIndex);
    io_t *io = as_io(h);
    if (!io) RETURN(ERR(SUB_ENGINE, E_PARAM));
    if (!buf || !size) RETURN(ERR(SUB_ENGINE, E_NULL));
    if (index >= (uint32_t)io->n_in) RETURN(ERR(SUB_ENGINE, E_INVALID_INDEX));
    *buf = (void *)(uintptr_t)io->in_addr[index];
    *size = io->in_size[index];
    RETURN(0);
}

EXPORT axclError axclrtEngineGetOutputBufferByIndex(axclrtEngineIO h, uint32_t index, void **buf, uint64_t *size) {
    LOCKED_ENTER(axclrtEngineGetOutputBufferByIndex);
    io_t *io = as_io(h);
    if (!io) RETURN(ERR(SUB_ENGINE, E_PARAM));
    if (!buf || !size) RETURN(ERR(SUB_ENGINE, E_NULL));
    if (index >= (uint32_t)io->n_out) RETURN(ERR(SUB_ENGINE, E_INVALID_INDEX));
    *buf = (void *)(uintptr_t)io->out_addr[index];
    *size = io->out_size[index];
    RETURN(0);
}

/* AXERA's runner calls this with batch 1 after creating an IO set; the stub models static-batch models only */
EXPORT axclError axclrtEngineSetDynamicBatchSize(axclrtEngineIO h, uint32_t batch) {
    LOCKED_ENTER(axclrtEngineSetDynamicBatchSize);
    NEED_CTX(c);
    (void)c;
    if (!as_io(h)) RETURN(ERR(SUB_ENGINE, E_PARAM));
    RETURN(batch == 1 ? 0 : ERR(SUB_ENGINE, E_PARAM));
}

/* checks of an execute (lock held): host views of the IO's buffers into in/out, the model into *mp */
static axclError exec_prepare(ctx_t *c, uint64_t model_id, uint64_t context_id, uint32_t group, axclrtEngineIO h,
                              model_t **mp, unsigned char **in, unsigned char **out) {
    model_t *m = find_model(model_id);
    if (!m || m->device != c->device) return ERR(SUB_ENGINE, E_PARAM);
    int ctx_ok = 0;
    for (int k = 0; k < m->n_ctx; k++) ctx_ok |= m->ctx_ids[k] == context_id;
    if (!ctx_ok) return ERR(SUB_ENGINE, E_PARAM);
    if (group >= (uint32_t)m->n_groups) return ERR(SUB_ENGINE, E_INVALID_INDEX);
    io_t *io = as_io(h);
    if (!io || io->model_id != model_id) return ERR(SUB_ENGINE, E_PARAM);
    for (int k = 0; k < io->n_in; k++) {
        uint64_t need = m->gin[group][k].size;
        in[k] = io->in_addr[k] && io->in_size[k] >= need ? dev_host(io->in_addr[k], need, io->device) : NULL;
        if (!in[k]) return ERR(SUB_ENGINE, E_PARAM); /* unbound, freed or too small for this group */
    }
    for (int k = 0; k < io->n_out; k++) {
        uint64_t need = m->gout[group][k].size;
        out[k] = io->out_addr[k] && io->out_size[k] >= need ? dev_host(io->out_addr[k], need, io->device) : NULL;
        if (!out[k]) return ERR(SUB_ENGINE, E_PARAM);
    }
    long fail_after = env_long("AXCL_STUB_FAIL_EXECUTE_AFTER", -1);
    if (fail_after >= 0 && (long)m->n_exec >= fail_after) return ERR(SUB_ENGINE, E_EXEC);
    m->n_exec++;
    g_c.executes++;
    *mp = m;
    return 0;
}

/* link model: end time of an execute of m on the NPU queue after *tail (lock held; 0 when no link model) */
static uint64_t link_exec(ctx_t *c, const model_t *m, uint64_t *tail) {
    device_t *dv = find_device(c->device);
    if (!g_link || !dv) return 0;
    return link_schedule(&dv->npu_free, tail, (uint64_t)param(m, "exec_us", (double)g_exec_us));
}

EXPORT axclError axclrtEngineExecute(uint64_t model_id, uint64_t context_id, uint32_t group, axclrtEngineIO h) {
    LOCKED_ENTER(axclrtEngineExecute);
    NEED_CTX(c);
    model_t *m = NULL;
    unsigned char *in[MAX_T], *out[MAX_T];
    axclError rc = exec_prepare(c, model_id, context_id, group, h, &m, in, out);
    if (rc) RETURN(rc);
    long delay_us = (long)param(m, "delay_us", 0);
    uint64_t end = link_exec(c, m, &t_sync_tail);
    pthread_mutex_unlock(&g_mu);
    /* compute outside the lock: concurrent executes of different models (or IOs) overlap like on the device */
    run_op(m, group, in, out);
    sleep_us(delay_us);
    sleep_until_us(end);
    return 0;
}

/* the work is done now (eagerly); the stream is busy until the link model says the NPU finished it */
EXPORT axclError axclrtEngineExecuteAsync(uint64_t model_id, uint64_t context_id, uint32_t group, axclrtEngineIO h,
                                          axclrtStream stream) {
    LOCKED_ENTER(axclrtEngineExecuteAsync);
    NEED_CTX(c);
    stream_t *st = as_stream(stream);
    if (!st || st->device != c->device) RETURN(ERR(SUB_STREAM, E_PARAM));
    model_t *m = NULL;
    unsigned char *in[MAX_T], *out[MAX_T];
    axclError rc = exec_prepare(c, model_id, context_id, group, h, &m, in, out);
    if (rc) RETURN(rc);
    link_exec(c, m, &st->tail);
    g_c.async_ops++;
    pthread_mutex_unlock(&g_mu);
    run_op(m, group, in, out);
    return 0;
}

/* =================================================================================================================
 * Stub-only inspection API (not part of AXCL)
 * ================================================================================================================= */
EXPORT int32_t axclStubGetCounters(axclStubCounters *out, uint32_t size) {
    if (!out) return -1;
    pthread_mutex_lock(&g_mu);
    g_c.device_lost = g_lost;
    g_c.initialized = g_inited;
    size_t n = size < sizeof(g_c) ? size : sizeof(g_c);
    memcpy(out, &g_c, n);
    pthread_mutex_unlock(&g_mu);
    return (int32_t)sizeof(g_c);
}

EXPORT uint64_t axclStubGetCallCount(const char *name) {
    uint64_t v = 0;
    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < FN_COUNT; i++)
        if (name && strcmp(fn_names[i], name) == 0) v = g_calls[i];
    pthread_mutex_unlock(&g_mu);
    return v;
}

EXPORT int32_t axclStubFunctionCount(void) { return FN_COUNT; }

EXPORT const char *axclStubFunctionName(int32_t i) { return (i >= 0 && i < FN_COUNT) ? fn_names[i] : NULL; }

/* the most recent calls (function indices, oldest first) into out[0..max); returns how many were written */
EXPORT int32_t axclStubGetCallLog(int32_t *out, int32_t max) {
    pthread_mutex_lock(&g_mu);
    uint64_t n = g_log_n < LOG_LEN ? g_log_n : LOG_LEN;
    if (max >= 0 && (uint64_t)max < n) n = (uint64_t)max;
    for (uint64_t i = 0; i < n && out; i++) out[i] = g_log[(g_log_n - n + i) % LOG_LEN];
    pthread_mutex_unlock(&g_mu);
    return (int32_t)n;
}

/* AXCL_STUB_REPORT=<path>: at library unload (process exit) write the counters as "key value" lines */
__attribute__((destructor)) static void stub_report(void) {
    const char *path = getenv("AXCL_STUB_REPORT");
    if (!path || !*path) return;
    FILE *f = fopen(path, "w");
    if (!f) return;
    fprintf(f, "initialized %d\ndevice_lost %d\noutstanding_allocs %lld\nloaded_models %lld\n"
               "outstanding_ioinfos %lld\noutstanding_ios %lld\nlive_contexts %lld\nreclaimed_at_teardown %lld\n",
            g_inited, g_lost, (long long)g_c.outstanding_allocs, (long long)g_c.loaded_models,
            (long long)g_c.outstanding_ioinfos, (long long)g_c.outstanding_ios, (long long)g_c.live_contexts,
            (long long)g_c.reclaimed_at_teardown);
    fprintf(f, "outstanding_streams %lld\n", (long long)g_c.outstanding_streams);
    for (int i = 0; i < FN_COUNT; i++) fprintf(f, "calls.%s %llu\n", fn_names[i], (unsigned long long)g_calls[i]);
    fclose(f);
}

/* zero the byte/call counters and the call log; outstanding-object counts are kept */
EXPORT void axclStubResetCounters(void) {
    pthread_mutex_lock(&g_mu);
    g_c.h2d_bytes = g_c.d2h_bytes = g_c.d2d_bytes = g_c.h2h_bytes = 0;
    g_c.h2d_calls = g_c.d2h_calls = g_c.d2d_calls = g_c.h2h_calls = 0;
    g_c.memset_bytes = g_c.memset_calls = 0;
    g_c.executes = g_c.failed_calls = g_c.total_calls = 0;
    g_c.reclaimed_at_teardown = 0;
    memset(g_calls, 0, sizeof(g_calls));
    g_log_n = 0;
    pthread_mutex_unlock(&g_mu);
}
