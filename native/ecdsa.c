// ECDSA for the /sign hot path on OpenSSL's EC primitives, through the OpenSSL
// that Node itself links (its symbols and headers ship with Node).
//
// Why: node:crypto on Node 20 (OpenSSL 3.0) spends ~130 us importing every new
// public key (a full EC_KEY_check_key, including n*Q = O) plus ~100 us setting
// up the first verification with it, mostly on the event loop. Here the point is
// decoded with EC_POINT_oct2point (which checks it is on the curve; on the
// prime-order NIST curves that is the whole public-key validation), the data is
// hashed and ECDSA_verify runs in libuv's thread pool. A registration's CSR
// check and its certificate signature run in one pool job (verifySign): on a
// two-core machine every hand-off between threads costs a wake-up.
//
// verify(curve, point, hash, data, signatureDer, callback(err, ok))
// signingKey(pem) -> key                        an EC private key, held here
// sign(key, hash, data, callback(err, signatureDer))
// verifySign(curve, point, hash, data, signatureDer, key, signHash, tbs, callback(err, signatureDer | 0 | -1))
//   signs tbs only if the signature verifies: 0 when it does not, -1 when the point is not on the curve
//   curve: "prime256v1" | "secp384r1" | "secp521r1"; point: uncompressed (04||X||Y)
//   hash: "sha256" | "sha384" | "sha512"
// backgroundThread() -> boolean                  the calling thread stops preempting others when woken
//
// Scheduling: the event loop is the stage every registration passes through
// twice. On two cores, a thread it wakes (a pool thread given a job, the SQLite
// writer given records) used to preempt it on the spot: the event loop was
// switched out ~0.65 times per registration and waited while the other thread
// ran. The pool threads that run these jobs, and the writer and checkpoint
// threads (which call backgroundThread), are SCHED_BATCH: the same CPU share,
// but a woken one takes a free core or waits for the next tick instead of
// preempting the thread that woke it.
#define _GNU_SOURCE
#define OPENSSL_SUPPRESS_DEPRECATED
#define NAPI_VERSION 8
#include <node_api.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DATA (64 * 1024)
#define MAX_SIG 160

typedef unsigned char *(*digest_fn)(const unsigned char *, size_t, unsigned char *);

typedef struct {
  napi_async_work work;
  napi_ref callback;
  /* the CSR check (group == NULL: none) */
  const EC_GROUP *group;
  digest_fn verify_digest;
  unsigned char point[133];
  size_t point_len;
  unsigned char *data;
  size_t data_len;
  unsigned char sig[MAX_SIG];
  size_t sig_len;
  /* the signature to make (key == NULL: none) */
  EC_KEY *key;
  digest_fn sign_digest;
  unsigned char *tbs;
  size_t tbs_len;
  unsigned char out[MAX_SIG];
  unsigned int out_len;
  int verified; /* 1 valid, 0 invalid, -1 malformed key */
  int signed_ok;
} job_t;

/* marks the externals signingKey() makes, so no other external is read as a key */
static const napi_type_tag KEY_TAG = {0x6b696c6e65636473ULL, 0x612d6b65792d7631ULL};

/* built once per process (the addon loads in every thread that uses it) and
   shared read-only: a group per call costs ~7 us */
static EC_GROUP *group_p256, *group_p384, *group_p521;
static pthread_once_t groups_once = PTHREAD_ONCE_INIT;

static void make_groups(void) {
  group_p256 = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
  group_p384 = EC_GROUP_new_by_curve_name(NID_secp384r1);
  group_p521 = EC_GROUP_new_by_curve_name(NID_secp521r1);
}

/* SCHED_BATCH for the calling thread (Linux: pid 0 is the calling thread) */
static int set_batch_policy(void) {
  struct sched_param param = {0};
  return sched_setscheduler(0, SCHED_BATCH, &param) == 0;
}
static __thread int pool_thread_batched;

static const EC_GROUP *curve_group(const char *name) {
  if (strcmp(name, "prime256v1") == 0) return group_p256;
  if (strcmp(name, "secp384r1") == 0) return group_p384;
  if (strcmp(name, "secp521r1") == 0) return group_p521;
  return NULL;
}

/* the one-shot digests: no provider fetch per call, as EVP_Digest would do */
static digest_fn hash_fn(const char *name) {
  if (strcmp(name, "sha256") == 0) return SHA256;
  if (strcmp(name, "sha384") == 0) return SHA384;
  if (strcmp(name, "sha512") == 0) return SHA512;
  return NULL;
}

static size_t digest_len(digest_fn fn) {
  return fn == SHA256 ? SHA256_DIGEST_LENGTH : fn == SHA384 ? SHA384_DIGEST_LENGTH : SHA512_DIGEST_LENGTH;
}

static int check_csr(job_t *job) {
  const EC_GROUP *group = job->group;
  int result = -1;
  EC_KEY *key = EC_KEY_new();
  EC_POINT *q = NULL;
  if (key == NULL || EC_KEY_set_group(key, group) != 1) goto done;
  q = EC_POINT_new(group);
  /* on-curve check happens here; infinity is refused below */
  if (q == NULL || EC_POINT_oct2point(group, q, job->point, job->point_len, NULL) != 1) goto done;
  if (EC_POINT_is_at_infinity(group, q) || EC_KEY_set_public_key(key, q) != 1) goto done;
  unsigned char digest[SHA512_DIGEST_LENGTH];
  job->verify_digest(job->data, job->data_len, digest);
  /* ECDSA_verify, as node:crypto's path: the signature must be exactly one
     ECDSA-Sig-Value in canonical DER (it re-encodes and compares) */
  result = ECDSA_verify(0, digest, (int)digest_len(job->verify_digest), job->sig, (int)job->sig_len, key) == 1 ? 1 : 0;
done:
  EC_POINT_free(q);
  EC_KEY_free(key);
  return result;
}

static void execute(napi_env env, void *arg) {
  (void)env;
  job_t *job = arg;
  if (!pool_thread_batched) pool_thread_batched = set_batch_policy() ? 1 : -1;
  job->verified = job->group ? check_csr(job) : 1;
  if (job->verified == 1 && job->key != NULL) {
    unsigned char digest[SHA512_DIGEST_LENGTH];
    job->sign_digest(job->tbs, job->tbs_len, digest);
    /* EC_KEY is only read while signing: one key serves every pool thread */
    job->signed_ok = ECDSA_sign(0, digest, (int)digest_len(job->sign_digest), job->out, &job->out_len, job->key) == 1;
  }
  /* a refused signature or point leaves errors on this pool thread's queue, which
     node:crypto shares: leave it empty */
  ERR_clear_error();
}

/* a job's own memory and its reference on the signing key */
static void free_job(job_t *job) {
  EC_KEY_free(job->key);
  free(job->data);
  free(job->tbs);
  free(job);
}

static napi_value error_value(napi_env env, const char *message) {
  napi_value msg, err;
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, NULL, msg, &err);
  return err;
}

static void complete(napi_env env, napi_status status, void *arg) {
  job_t *job = arg;
  napi_value cb, global, argv[2];
  napi_get_reference_value(env, job->callback, &cb);
  napi_get_global(env, &global);
  napi_get_null(env, &argv[0]);
  napi_get_undefined(env, &argv[1]);
  if (status != napi_ok) {
    argv[0] = error_value(env, "the job was cancelled");
  } else if (job->group != NULL && job->key != NULL && job->verified != 1) {
    napi_create_int32(env, job->verified, &argv[1]); /* verifySign: 0 wrong signature, -1 not a point on the curve */
  } else if (job->verified < 0) {
    argv[0] = error_value(env, "public key is not a point on the curve");
  } else if (job->key == NULL) {
    napi_get_boolean(env, job->verified == 1, &argv[1]);
  } else if (!job->signed_ok) {
    argv[0] = error_value(env, "signing failed");
  } else {
    void *out;
    napi_create_buffer_copy(env, job->out_len, job->out, &out, &argv[1]);
  }
  napi_call_function(env, global, cb, 2, argv, NULL);
  napi_delete_reference(env, job->callback);
  napi_delete_async_work(env, job->work);
  free_job(job);
}

static int get_bytes(napi_env env, napi_value v, unsigned char **data, size_t *len) {
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return 0;
  napi_typedarray_type type;
  napi_value ab;
  size_t offset;
  void *ptr;
  if (napi_get_typedarray_info(env, v, &type, len, &ptr, &ab, &offset) != napi_ok || type != napi_uint8_array) return 0;
  *data = ptr;
  return 1;
}

static unsigned char *copy_bytes(const unsigned char *data, size_t len) {
  unsigned char *out = malloc(len ? len : 1);
  if (out != NULL) memcpy(out, data, len);
  return out;
}

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

static int get_string(napi_env env, napi_value v, char *out, size_t size) {
  size_t n;
  return napi_get_value_string_utf8(env, v, out, size, &n) == napi_ok;
}

/* argv: curve, point, hash, data, signature */
static const char *read_check(napi_env env, napi_value *argv, job_t *job) {
  char curve[16], hash[16];
  if (!get_string(env, argv[0], curve, sizeof curve)) return "curve must be a string";
  if (!get_string(env, argv[2], hash, sizeof hash)) return "hash must be a string";
  job->group = curve_group(curve);
  job->verify_digest = hash_fn(hash);
  if (job->group == NULL) return "unsupported curve";
  if (job->verify_digest == NULL) return "unsupported hash";
  unsigned char *point, *data, *sig;
  size_t point_len, data_len, sig_len;
  if (!get_bytes(env, argv[1], &point, &point_len) || !get_bytes(env, argv[3], &data, &data_len) ||
      !get_bytes(env, argv[4], &sig, &sig_len))
    return "point, data and signature must be Uint8Arrays";
  if (point_len == 0 || point_len > sizeof job->point || data_len > MAX_DATA || sig_len == 0 || sig_len > sizeof job->sig)
    return "point, data or signature has an impossible length";
  memcpy(job->point, point, point_len);
  job->point_len = point_len;
  memcpy(job->sig, sig, sig_len);
  job->sig_len = sig_len;
  job->data_len = data_len;
  job->data = copy_bytes(data, data_len);
  return job->data ? NULL : "out of memory";
}

/* argv: key, hash, data */
static const char *read_sign(napi_env env, napi_value *argv, job_t *job) {
  void *key;
  char hash[16];
  napi_valuetype t;
  napi_typeof(env, argv[0], &t);
  bool tagged = false;
  if (t != napi_external || napi_check_object_type_tag(env, argv[0], &KEY_TAG, &tagged) != napi_ok || !tagged ||
      napi_get_value_external(env, argv[0], &key) != napi_ok)
    return "key must come from signingKey()";
  if (!get_string(env, argv[1], hash, sizeof hash)) return "hash must be a string";
  job->sign_digest = hash_fn(hash);
  if (job->sign_digest == NULL) return "unsupported hash";
  unsigned char *data;
  size_t len;
  if (!get_bytes(env, argv[2], &data, &len)) return "data must be a Uint8Array";
  if (len > MAX_DATA) return "data is too long";
  job->tbs_len = len;
  job->tbs = copy_bytes(data, len);
  if (job->tbs == NULL) return "out of memory";
  EC_KEY_up_ref(key);
  job->key = key;
  return NULL;
}

static napi_value queue(napi_env env, job_t *job, napi_value callback, const char *error) {
  napi_valuetype t;
  napi_typeof(env, callback, &t);
  if (error == NULL && t != napi_function) error = "callback must be a function";
  if (error != NULL) {
    free_job(job);
    return throw_type(env, error);
  }
  napi_value name;
  napi_create_string_utf8(env, "kiln:ecdsa", NAPI_AUTO_LENGTH, &name);
  napi_create_reference(env, callback, 1, &job->callback);
  napi_create_async_work(env, NULL, name, execute, complete, job, &job->work);
  napi_queue_async_work(env, job->work);
  return NULL;
}

/* verify: a CSR check; sign: a signature; verifySign: both, the check's arguments first */
static napi_value start_job(napi_env env, napi_callback_info info, size_t arity, int check, int sign, const char *usage) {
  size_t argc = 9;
  napi_value argv[9];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != arity) return throw_type(env, usage);
  job_t *job = calloc(1, sizeof *job);
  if (job == NULL) return throw_type(env, "out of memory");
  const char *error = check ? read_check(env, argv, job) : NULL;
  if (error == NULL && sign) error = read_sign(env, argv + (check ? 5 : 0), job);
  return queue(env, job, argv[arity - 1], error);
}

static napi_value verify(napi_env env, napi_callback_info info) {
  return start_job(env, info, 6, 1, 0, "verify(curve, point, hash, data, signature, callback)");
}

static napi_value sign(napi_env env, napi_callback_info info) {
  return start_job(env, info, 4, 0, 1, "sign(key, hash, data, callback)");
}

static napi_value verify_sign(napi_env env, napi_callback_info info) {
  return start_job(env, info, 9, 1, 1, "verifySign(curve, point, hash, data, signature, key, signHash, tbs, callback)");
}

static void free_key(napi_env env, void *key, void *hint) {
  (void)env;
  (void)hint;
  EC_KEY_free(key);
}

/* signingKey(pem): the EC private key of an unencrypted PEM (PKCS#8 or SEC1) */
static napi_value signing_key(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out = NULL;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  unsigned char *pem;
  size_t len;
  if (argc != 1 || !get_bytes(env, argv[0], &pem, &len) || len > MAX_DATA) return throw_type(env, "signingKey(pem: Uint8Array)");
  BIO *bio = BIO_new_mem_buf(pem, (int)len);
  /* an empty passphrase callback: an encrypted key fails here instead of prompting */
  EVP_PKEY *pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, "") : NULL;
  EC_KEY *key = pkey ? EVP_PKEY_get1_EC_KEY(pkey) : NULL;
  EVP_PKEY_free(pkey);
  BIO_free(bio);
  ERR_clear_error();
  if (key == NULL) return throw_type(env, "not an unencrypted PEM EC private key");
  if (ECDSA_size(key) > MAX_SIG || napi_create_external(env, key, free_key, NULL, &out) != napi_ok) {
    EC_KEY_free(key);
    return throw_type(env, "unsupported EC key");
  }
  if (napi_type_tag_object(env, out, &KEY_TAG) != napi_ok) return throw_type(env, "cannot tag the key"); /* freed by free_key */
  return out;
}

static napi_value background_thread(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  napi_get_boolean(env, set_batch_policy(), &out);
  return out;
}

NAPI_MODULE_INIT() {
  pthread_once(&groups_once, make_groups);
  static const struct {
    const char *name;
    napi_callback fn;
  } fns[] = {{"verify", verify}, {"signingKey", signing_key}, {"sign", sign}, {"verifySign", verify_sign}, {"backgroundThread", background_thread}};
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value fn;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &fn);
    napi_set_named_property(env, exports, fns[i].name, fn);
  }
  return exports;
}
