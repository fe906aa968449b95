"""A RabbitMQ client no one here wrote (pika), for the tests.

usage:
  amqp.py publish URI QUEUE        < one message body per line (persistent, confirmed)
  amqp.py get URI QUEUE N SECONDS  prints up to N bodies (acked), one per line
  amqp.py count URI QUEUE          prints the number of ready messages
"""
import sys, time
import pika

command, uri, queue = sys.argv[1:4]
connection = pika.BlockingConnection(pika.URLParameters(uri))
channel = connection.channel()
if command != "count":
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
    while got < n and time.time() < deadline:
        method, _, body = channel.basic_get(queue)
        if method is None:
            time.sleep(0.05)
            continue
        print(body.decode("utf-8", "replace"), flush=True)
        channel.basic_ack(method.delivery_tag)
        got += 1
elif command == "count":
    print(channel.queue_declare(queue=queue, passive=True).method.message_count)
connection.close()
