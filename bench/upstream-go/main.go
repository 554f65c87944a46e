// A fixed-response HTTP/1.1 keep-alive server for the benchmarks: it runs in its own process and is
// never the bottleneck, so only the client's cost is measured. Standard library only.
//
//	bench-upstream [-port 0] [-delay 0]   prints the port it listens on (127.0.0.1), then serves
//
// Every request gets "200 OK" with a 2-byte body, after -delay (an upstream that takes its time,
// to show what serialising requests costs); a request body announced by Content-Length is read and
// discarded. Pipelined requests are answered in order.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"
)

var response = []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")

func serve(conn net.Conn, delay time.Duration) {
	defer conn.Close()
	reader := bufio.NewReaderSize(conn, 16384)
	writer := bufio.NewWriterSize(conn, 16384)
	for {
		length := int64(0)
		for {
			line, err := reader.ReadSlice('\n')
			if err != nil {
				return
			}
			line = bytes.TrimRight(line, "\r\n")
			if len(line) == 0 {
				break
			}
			if colon := bytes.IndexByte(line, ':'); colon > 0 &&
				bytes.EqualFold(bytes.TrimSpace(line[:colon]), []byte("content-length")) {
				n, err := strconv.ParseInt(string(bytes.TrimSpace(line[colon+1:])), 10, 64)
				if err != nil || n < 0 {
					return
				}
				length = n
			}
		}
		if length > 0 {
			if _, err := io.CopyN(io.Discard, reader, length); err != nil {
				return
			}
		}
		if delay > 0 {
			time.Sleep(delay)
		}
		if _, err := writer.Write(response); err != nil {
			return
		}
		// answer at once unless another pipelined request is already buffered
		if reader.Buffered() == 0 {
			if err := writer.Flush(); err != nil {
				return
			}
		}
	}
}

func main() {
	port := flag.Int("port", 0, "port on 127.0.0.1 (0: any free port)")
	delay := flag.Duration("delay", 0, "wait this long before each response")
	flag.Parse()
	listener, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-upstream:", err)
		os.Exit(1)
	}
	fmt.Println(listener.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()
	for {
		conn, err := listener.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench-upstream:", err)
			continue
		}
		go serve(conn, *delay)
	}
}
