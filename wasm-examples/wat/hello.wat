;; hello: prints a greeting through WASI p1 fd_write and exits 0.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello from a wasm container\n")
  (func (export "_start")
    ;; iovec at 0: base 16, length 28
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 28))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $proc_exit (i32.const 0))))
