"""A RabbitMQ client no one here wrote (pika), for the tests.

usage:
  amqp.py publish URI QUEUE        < one message body per line (persistent, confirmed)
  amqp.py get URI QUEUE N SECONDS  prints up to N bodies (acked), one per line
  amqp.py count URI QUEUE          prints the number of ready messages
  amqp.py consumers URI QUEUE      prints the number of consumers
  amqp.py announce URI APP_ID      < one message per line, to the cluster exchange (MailerQ's "cluster")
"""
import sys, time
import pika

command, uri, queue = sys.argv[1:4]
connection = pika.BlockingConnection(pika.URLParameters(uri))
channel = connection.channel()
if command not in ("count", "consumers", "announce"):
    channel.queue_declare(queue=queue, durable=True)

if command == "publish":
    channel.confirm_delivery()
    for line in sys.stdin:
        body = line.rstrip("\n").encode()
        channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2, content_type="application/json"))
elif command == "get":
    n, seconds = int(sys.argv[4]), float(sys.argv[5])
    deadline = time.time() + seconds
    got = 0
    channel.basic_qos(prefetch_count=1000)
    for method, _, body in channel.consume(queue, inactivity_timeout=0.2):
        if method is not None:
            print(body.decode("utf-8", "replace"))
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
elif command == "consumers":
    print(channel.queue_declare(queue=queue, passive=True).method.consumer_count)
connection.close()
