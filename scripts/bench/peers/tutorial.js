// The Node tutorial's presence server, as the tutorial writes it: a peer for
// scripts/benchmark.py.
//
//   node scripts/bench/peers/tutorial.js --port 0
//
// http.createServer() + new WebSocketServer({ server }) + uuidv4(), with the
// tutorial's handleMessage (JSON.parse), broadcast (JSON.stringify(users) once
// per connection) and handleClose, including its console.log on every update.
//
// Added for the benchmark, and nothing else:
//   - `--port PORT` (0 picks a free port); the startup line names the port;
//   - the `/echo` endpoint, which the tutorial does not have.
// No join snapshot: like the tutorial, a user first hears from the server
// when someone sends an update (the load generator copes with that).

const http = require('http')
const { WebSocketServer } = require('ws')
const uuidv4 = require('uuid').v4
const url = require('url')

const server = http.createServer()
const wsServer = new WebSocketServer({ server })

const portIndex = process.argv.indexOf('--port')
const port = portIndex >= 0 ? Number(process.argv[portIndex + 1]) : 8000

const connections = {}
const users = {}

const handleMessage = (bytes, uuid) => {
  const message = JSON.parse(bytes.toString())
  const user = users[uuid]
  user.state = message
  broadcast()
  console.log(`${user.username} updated their state: ${JSON.stringify(user.state)}`)
}

const handleClose = (uuid) => {
  console.log(`${users[uuid].username} disconnected`)
  delete connections[uuid]
  delete users[uuid]
  broadcast()
}

const broadcast = () => {
  Object.keys(connections).forEach((uuid) => {
    const connection = connections[uuid]
    const message = JSON.stringify(users)
    connection.send(message)
  })
}

// Benchmark addition: every text or binary message comes back unchanged.
const handleEcho = (connection) => {
  connection.on('message', (data, isBinary) => connection.send(data, { binary: isBinary }))
}

wsServer.on('connection', (connection, request) => {
  if (url.parse(request.url).pathname === '/echo') {
    handleEcho(connection)
    return
  }
  const { username } = url.parse(request.url, true).query
  console.log(`${username} connected`)
  const uuid = uuidv4()
  connections[uuid] = connection
  users[uuid] = {
    username,
    state: {}
  }
  connection.on('message', (message) => handleMessage(message, uuid))
  connection.on('close', () => handleClose(uuid))
})

server.listen(port, '127.0.0.1', () => {
  console.log(`WebSocket server is running on port ${server.address().port}`)
})
