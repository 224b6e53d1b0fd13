// ECDSA verification of device CSRs on OpenSSL's EC primitives, through the
// OpenSSL that Node itself links (its symbols and headers ship with Node).
//
// Why: node:crypto on Node 20 (OpenSSL 3.0) spends ~130 µs importing every new
// public key (a full EC_KEY_check_key, including n·Q = O) plus ~100 µs setting
// up the first verification with it, mostly on the event loop. Here the point is
// decoded with EC_POINT_oct2point (which checks it is on the curve; on the
// prime-order NIST curves that is the whole public-key validation), the data is
// hashed and ECDSA_verify runs in libuv's thread pool.
//
// verify(curve, point, hash, data, signatureDer, callback(err, ok))
//   curve: "prime256v1" | "secp384r1" | "secp521r1"; point: uncompressed (04||X||Y)
//   hash: "sha256" | "sha384" | "sha512"
#define OPENSSL_SUPPRESS_DEPRECATED
#define NAPI_VERSION 8
#include <node_api.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DATA (64 * 1024)

typedef struct {
  napi_async_work work;
  napi_ref callback;
  const EC_GROUP *group;
  const EVP_MD *md;
  unsigned char point[133];
  size_t point_len;
  unsigned char *data;
  size_t data_len;
  unsigned char sig[160];
  size_t sig_len;
  int result; /* 1 valid, 0 invalid, -1 malformed key */
} job_t;

static const EVP_MD *md_sha256, *md_sha384, *md_sha512;
/* built once and shared read-only: a group per call costs ~7 us */
static EC_GROUP *group_p256, *group_p384, *group_p521;

static const EC_GROUP *curve_group(const char *name) {
  if (strcmp(name, "prime256v1") == 0) return group_p256;
  if (strcmp(name, "secp384r1") == 0) return group_p384;
  if (strcmp(name, "secp521r1") == 0) return group_p521;
  return NULL;
}

static const EVP_MD *hash_md(const char *name) {
  if (strcmp(name, "sha256") == 0) return md_sha256;
  if (strcmp(name, "sha384") == 0) return md_sha384;
  if (strcmp(name, "sha512") == 0) return md_sha512;
  return NULL;
}

static void execute(napi_env env, void *arg) {
  (void)env;
  job_t *job = arg;
  job->result = -1;
  const EC_GROUP *group = job->group;
  EC_KEY *key = EC_KEY_new();
  EC_POINT *q = NULL;
  if (key == NULL || EC_KEY_set_group(key, group) != 1) goto done;
  q = EC_POINT_new(group);
  /* on-curve check happens here; infinity is refused below */
  if (q == NULL || EC_POINT_oct2point(group, q, job->point, job->point_len, NULL) != 1) goto done;
  if (EC_POINT_is_at_infinity(group, q) || EC_KEY_set_public_key(key, q) != 1) goto done;
  job->result = 0;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (EVP_Digest(job->data, job->data_len, digest, &digest_len, job->md, NULL) != 1) goto done;
  /* ECDSA_verify, as node:crypto's path: the signature must be exactly one
     ECDSA-Sig-Value in canonical DER (it re-encodes and compares) */
  job->result = ECDSA_verify(0, digest, (int)digest_len, job->sig, (int)job->sig_len, key) == 1 ? 1 : 0;
done:
  EC_POINT_free(q);
  EC_KEY_free(key);
}

static void complete(napi_env env, napi_status status, void *arg) {
  job_t *job = arg;
  napi_value cb, global, argv[2];
  napi_get_reference_value(env, job->callback, &cb);
  napi_get_global(env, &global);
  if (status != napi_ok || job->result < 0) {
    napi_value msg;
    napi_create_string_utf8(env, status != napi_ok ? "verification was cancelled" : "public key is not a point on the curve", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &argv[0]);
    napi_get_undefined(env, &argv[1]);
  } else {
    napi_get_null(env, &argv[0]);
    napi_get_boolean(env, job->result == 1, &argv[1]);
  }
  napi_call_function(env, global, cb, 2, argv, NULL);
  napi_delete_reference(env, job->callback);
  napi_delete_async_work(env, job->work);
  free(job->data);
  free(job);
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

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

static napi_value verify(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 6) return throw_type(env, "verify(curve, point, hash, data, signature, callback)");
  char curve[16], hash[16];
  size_t n;
  if (napi_get_value_string_utf8(env, argv[0], curve, sizeof curve, &n) != napi_ok) return throw_type(env, "curve must be a string");
  if (napi_get_value_string_utf8(env, argv[2], hash, sizeof hash, &n) != napi_ok) return throw_type(env, "hash must be a string");
  const EC_GROUP *group = curve_group(curve);
  const EVP_MD *md = hash_md(hash);
  if (group == NULL) return throw_type(env, "unsupported curve");
  if (md == NULL) return throw_type(env, "unsupported hash");
  unsigned char *point, *data, *sig;
  size_t point_len, data_len, sig_len;
  if (!get_bytes(env, argv[1], &point, &point_len) || !get_bytes(env, argv[3], &data, &data_len) ||
      !get_bytes(env, argv[4], &sig, &sig_len))
    return throw_type(env, "point, data and signature must be Uint8Arrays");
  napi_valuetype t;
  napi_typeof(env, argv[5], &t);
  if (t != napi_function) return throw_type(env, "callback must be a function");
  if (point_len == 0 || point_len > sizeof(((job_t *)0)->point) || data_len > MAX_DATA || sig_len == 0 ||
      sig_len > sizeof(((job_t *)0)->sig))
    return throw_type(env, "point, data or signature has an impossible length");

  job_t *job = calloc(1, sizeof *job);
  if (job == NULL) return throw_type(env, "out of memory");
  job->data = malloc(data_len ? data_len : 1);
  if (job->data == NULL) {
    free(job);
    return throw_type(env, "out of memory");
  }
  job->group = group;
  job->md = md;
  memcpy(job->point, point, point_len);
  job->point_len = point_len;
  memcpy(job->data, data, data_len);
  job->data_len = data_len;
  memcpy(job->sig, sig, sig_len);
  job->sig_len = sig_len;
  napi_value name;
  napi_create_string_utf8(env, "kiln:ec-verify", NAPI_AUTO_LENGTH, &name);
  napi_create_reference(env, argv[5], 1, &job->callback);
  napi_create_async_work(env, NULL, name, execute, complete, job, &job->work);
  napi_queue_async_work(env, job->work);
  return NULL;
}

NAPI_MODULE_INIT() {
  md_sha256 = EVP_sha256();
  md_sha384 = EVP_sha384();
  md_sha512 = EVP_sha512();
  group_p256 = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
  group_p384 = EC_GROUP_new_by_curve_name(NID_secp384r1);
  group_p521 = EC_GROUP_new_by_curve_name(NID_secp521r1);
  napi_value fn;
  napi_create_function(env, "verify", NAPI_AUTO_LENGTH, verify, NULL, &fn);
  napi_set_named_property(env, exports, "verify", fn);
  return exports;
}
