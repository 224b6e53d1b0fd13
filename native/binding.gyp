{
  "targets": [
    {
      "target_name": "kiln_ec_verify",
      "sources": ["ec_verify.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
