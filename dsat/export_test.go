package dsat

// CompleteCallForTest exposes the keys and arguments of a complete call so
// tests can run the script directly, twice, as a retried call would.
func CompleteCallForTest(c *Client, d Delivery, output []byte, label string) ([]string, []any) {
	keys, args, err := c.completeCall(d, output, label)
	if err != nil {
		panic(err)
	}
	return keys, args
}

func topoOrderForTest(p *Pipeline) []string { return topoOrder(p) }
