"""A RabbitMQ client no one here wrote (pika), for the tests.

usage:
  amqp.py publish URI QUEUE        < one message body per line (persistent, confirmed)
  amqp.py get URI QUEUE N SECONDS  prints up to N bodies (acked), one per line
  amqp.py count URI QUEUE          prints the number of ready messages
  amqp.py consumers URI QUEUE      prints the number of consumers
  amqp.py announce URI APP_ID      < one message per line, to the cluster exchange (MailerQ's "cluster")
  amqp.py publish-each URI QUEUE   < one JSON per line: {"body": TEXT, "priority": N, "encoding": "gzip",
                                     "compress": BOOL (default: encoding is gzip)}
  amqp.py get-props URI QUEUE N SECONDS  like get, one JSON per message: {"priority", "encoding",
                                     "body" (gunzipped when the encoding says gzip)}
  amqp.py same-arguments URI QUEUE JSON  prints "same" when declaring QUEUE (durable) with these
                                     arguments matches the queue there, else "different: WHY"
  amqp.py exists URI QUEUE         prints yes or no
Queues are declared (durable, no arguments) only when they do not exist yet.
"""
import gzip, json, sys, time
import pika

command, uri, queue = sys.argv[1:4]
connection = pika.BlockingConnection(pika.URLParameters(uri))


def exists(name):
    # A passive declare of a missing queue closes its channel: a channel of its own.
    probe = connection.channel()
    try:
        probe.queue_declare(queue=name, passive=True)
        probe.close()
        return True
    except pika.exceptions.ChannelClosedByBroker:
        return False


if command not in ("count", "consumers", "announce", "same-arguments", "exists") and not exists(queue):
    connection.channel().queue_declare(queue=queue, durable=True)
channel = connection.channel()

if command == "publish":
    channel.confirm_delivery()
    for line in sys.stdin:
        body = line.rstrip("\n").encode()
        channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2, content_type="application/json"))
elif command == "publish-each":
    channel.confirm_delivery()
    for line in sys.stdin:
        m = json.loads(line)
        body = m["body"].encode()
        if m.get("compress", m.get("encoding") == "gzip"):
            body = gzip.compress(body)
        props = pika.BasicProperties(
            delivery_mode=2, content_type="application/json", priority=m.get("priority"), content_encoding=m.get("encoding")
        )
        channel.basic_publish("", queue, body, props)
elif command in ("get", "get-props"):
    n, seconds = int(sys.argv[4]), float(sys.argv[5])
    deadline = time.time() + seconds
    got = 0
    channel.basic_qos(prefetch_count=1000)
    for method, props, body in channel.consume(queue, inactivity_timeout=0.2):
        if method is not None:
            if command == "get":
                print(body.decode("utf-8", "replace"))
            else:
                if props.content_encoding in ("gzip", "x-gzip"):
                    body = gzip.decompress(body)
                text = body.decode("utf-8", "replace")
                print(json.dumps({"priority": props.priority, "encoding": props.content_encoding, "body": text}))
            channel.basic_ack(method.delivery_tag)
            got += 1
        if got >= n or time.time() >= deadline:
            break
    # Unacked prefetched messages go back to the queue.
    channel.cancel()
    sys.stdout.flush()
elif command == "count":
    print(channel.queue_declare(queue=queue, passive=True).method.message_count)
elif command == "announce":
    channel.exchange_declare("cluster", exchange_type="fanout", durable=True)
    for line in sys.stdin:
        props = pika.BasicProperties(app_id=queue, content_type="application/json", expiration="15000")
        channel.basic_publish("cluster", "", line.rstrip("\n").encode(), props)
elif command == "same-arguments":
    try:
        channel.queue_declare(queue=queue, durable=True, arguments=json.loads(sys.argv[4]))
        print("same")
    except pika.exceptions.ChannelClosedByBroker as e:
        print(f"different: {e}")
elif command == "exists":
    print("yes" if exists(queue) else "no")
elif command == "consumers":
    print(channel.queue_declare(queue=queue, passive=True).method.consumer_count)
connection.close()
