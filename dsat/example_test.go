package dsat_test

import (
	"context"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/dsat"
)

// This example submits a task and reads its state. Satellites (package
// workers) would then run it through the pipeline.
func Example() {
	mr, _ := miniredis.Run()
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()

	p, err := dsat.ParsePipeline("hello.yaml", []byte(`
name: hello
version: 1.0.0
steps:
  greet: {handler: echo}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	client, _ := dsat.NewClient(rdb, dsat.Config{}, p)
	ctx := context.Background()
	sub, err := client.Submit(ctx, "hello", []byte(`{"name":"Ada"}`), dsat.SubmitOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	st, _ := client.Get(ctx, sub.ID)
	fmt.Println(st.Pipeline, st.Version, st.Status, st.Seq)
	// Output: hello 1.0.0 pending 1
}

// Parse errors name the file, the line, the step and the field.
func ExampleParsePipeline_errors() {
	_, err := dsat.ParsePipeline("bad.yaml", []byte(`
name: bad
version: 1.0.0
steps:
  a: {handler: echo, next: [b], timeout: soon}
`))
	fmt.Println(err)
	// Output:
	// bad.yaml:5: step "a": field "timeout": must be a positive Go duration such as 5s, 200ms or 1m30s, got "soon"
	// bad.yaml:5: step "a": field "next": unknown target step "b"
}
