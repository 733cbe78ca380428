;; busy: a loop with no host calls at all (not even a print), the tightest case for interruption.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $spin (br $spin))))
