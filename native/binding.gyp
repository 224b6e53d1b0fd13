{
  "targets": [
    {
      "target_name": "kiln_ecdsa",
      "sources": ["ecdsa.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
