"""`%%rust`: run a cell in a Rust (evcxr) kernel from a Python notebook, relaying its outputs.

Free Colab runtimes only offer a Python kernel. This IPython extension starts the evcxr kernel ("rust" kernelspec)
once per session, sends each `%%rust` cell to it, and shows what comes back: printed text, images and HTML tables
(through IPython's display machinery), and errors. An error, a panic or text on stderr fails the cell with
`RustCellError`, so a notebook run stops where a plain Rust notebook would show the failure.

    %load_ext kit_colab
    %%rust
    println!("hello from Rust");
"""
import atexit
import queue

from IPython.display import display

_kernel = None


class RustCellError(RuntimeError):
    """The Rust cell failed: a compile error, a panic, or an error returned through `?`."""


def _client():
    global _kernel
    if _kernel is None:
        from jupyter_client.manager import start_new_kernel

        km, kc = start_new_kernel(kernel_name="rust", startup_timeout=120)
        _kernel = (km, kc)
        # The Rust kernel is this process's child: shut it down when the Python kernel exits, or it outlives it.
        atexit.register(_shutdown)
    return _kernel[1]


def _shutdown():
    global _kernel
    if _kernel is not None:
        km, kc = _kernel
        _kernel = None
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run_rust(code, timeout=3600):
    """Execute `code` in the Rust kernel; relay outputs; raise RustCellError on failure."""
    kc = _client()
    msg_id = kc.execute(code, store_history=True)
    failure = []
    while True:
        try:
            msg = kc.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            raise RustCellError(f"no reply from the Rust kernel within {timeout} s")
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            text = content.get("text", "")
            if content.get("name") == "stderr":
                failure.append(text)
                print(text, end="", file=__import__("sys").stderr)
            else:
                print(text, end="")
        elif kind in ("display_data", "execute_result"):
            display(content.get("data", {}), raw=True)
        elif kind == "error":
            failure.append("\n".join(content.get("traceback", [])) or content.get("evalue", ""))
        elif kind == "status" and content.get("execution_state") == "idle":
            break
    if failure:
        raise RustCellError("the Rust cell failed:\n" + "".join(failure))


def load_ipython_extension(ipython):
    def rust(line, cell):
        run_rust(cell)

    ipython.register_magic_function(rust, magic_kind="cell", magic_name="rust")


def unload_ipython_extension(ipython):
    _shutdown()
