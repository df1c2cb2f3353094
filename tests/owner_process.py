"""A docmem process that holds a corpus as ``docmem chat`` does, driven line by line on stdin:
``search QUERY`` prints the top hit's path; ``quit`` closes the service. Used by the tests of
the ownership rule (run as ``python -m tests.owner_process CORPUS``)."""

from __future__ import annotations

import sys

from docmem.api import connect


def main() -> None:
    corpus = sys.argv[1] if len(sys.argv) > 1 else None
    with connect(corpus=corpus) as service:
        service.open_corpus(create=True, embedder="none")
        service.wait_serving()
        print(f"ready {type(service.route()).__name__}", flush=True)
        for line in sys.stdin:
            command, _, arg = line.strip().partition(" ")
            if command == "search":
                page = service.search(arg)
                print("hit " + (page.hits[0].chunk.path if page.hits else "-"), flush=True)
            elif command == "quit":
                break
    print("closed", flush=True)


if __name__ == "__main__":
    main()
