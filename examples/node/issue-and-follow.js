#!/usr/bin/env node
// Issue N copies of a shell command to a batchgate service and follow the update stream until
// every one of them has been reported. Built from proto/ alone: no generated code.
//
//   node issue-and-follow.js [--address HOST:PORT] [--count N] [--cores C] [--wall-time S]
//                            [--env NAME=VALUE ...] [--output] [--tls-ca PEM [--tls-cert PEM --tls-key PEM]]
//                            [--token TOKEN] COMMAND
//
// --tls-ca turns TLS on (with --tls-cert and --tls-key: mutual TLS); a service with a tokens
// file wants a bearer token: --token, or $BATCHGATE_TOKEN (a flag shows in ps).
//
// --env sets a variable with SetEnv for this run's job set alone; --wall-time gives each job a
// limit, past which the service stops it and reports EXIT_REASON_TIMELIMIT; --output prints
// each job's stdout and stderr (GetJobOutput) after its update.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { randomUUID } = require('node:crypto');
const { parseArgs, promisify } = require('node:util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const PROTO_ROOT = path.join(__dirname, '..', '..', 'proto');
// keepCase: the field names of the .proto; longs as strings: int64 ids lose nothing.
const LOAD_OPTIONS = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

const USAGE =
  'usage: issue-and-follow.js [--address HOST:PORT] [--count N] [--cores C] [--wall-time S] [--env NAME=VALUE ...] [--output] ' +
  '[--tls-ca PEM [--tls-cert PEM --tls-key PEM]] [--token TOKEN] COMMAND';

function parseCommandLine() {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        address: { type: 'string', default: '127.0.0.1:50051' },
        count: { type: 'string', default: '1' },
        cores: { type: 'string' },
        'wall-time': { type: 'string' },
        env: { type: 'string', multiple: true, default: [] },
        output: { type: 'boolean', default: false },
        'tls-ca': { type: 'string' },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
        token: { type: 'string', default: process.env.BATCHGATE_TOKEN },
      },
      allowPositionals: true,
    });
  } catch (error) {
    exitWithUsage(error.message);
  }
  const { values, positionals } = parsed;
  const count = Number(values.count);
  if (!Number.isInteger(count) || count < 1) exitWithUsage(`--count must be a whole number >= 1, not ${values.count}`);
  if (positionals.length !== 1) exitWithUsage('give the command as one argument (quote it)');
  // Cores left out take the service's default; the service checks the number.
  const cores = values.cores === undefined ? undefined : Number(values.cores);
  const wallTime = values['wall-time'] === undefined ? undefined : Number(values['wall-time']);
  const variables = values.env.map((assignment) => {
    const equals = assignment.indexOf('=');
    if (equals < 1) exitWithUsage(`--env takes NAME=VALUE, not ${assignment}`);
    return { name: assignment.slice(0, equals), value: assignment.slice(equals + 1) };
  });
  if (Boolean(values['tls-cert']) !== Boolean(values['tls-key'])) exitWithUsage('--tls-cert and --tls-key go together');
  if ((values['tls-cert'] || values['tls-key']) && !values['tls-ca']) exitWithUsage('--tls-cert needs --tls-ca');
  const tls = values['tls-ca'] && { ca: values['tls-ca'], cert: values['tls-cert'], key: values['tls-key'] };
  return {
    address: values.address, tls, token: values.token, count, cores, wallTime, variables, output: values.output, command: positionals[0],
  };
}

function exitWithUsage(problem) {
  console.error(`${problem}\n${USAGE}`);
  process.exit(2);
}

function connect({ address, tls, token }) {
  const definition = protoLoader.loadSync('batchgate/v1/batchgate.proto', { ...LOAD_OPTIONS, includeDirs: [PROTO_ROOT] });
  const { BatchSystem } = grpc.loadPackageDefinition(definition).batchgate.v1;
  const credentials = tls
    ? grpc.credentials.createSsl(
        fs.readFileSync(tls.ca),
        tls.key ? fs.readFileSync(tls.key) : null,
        tls.cert ? fs.readFileSync(tls.cert) : null,
      )
    : grpc.credentials.createInsecure();
  // The token goes as metadata on every call: grpc-js's call credentials would refuse a
  // plaintext channel, and a service on 127.0.0.1 may want a token without TLS.
  const interceptors = token
    ? [(options, nextCall) => new grpc.InterceptingCall(nextCall(options), {
        start(metadata, listener, next) {
          metadata.set('authorization', `Bearer ${token}`);
          next(metadata, listener);
        },
      })]
    : [];
  return new BatchSystem(address, credentials, { interceptors });
}

function describeUpdate(update) {
  const wallTime = update.wall_time_seconds == null ? '-' : `${update.wall_time_seconds.toFixed(3)}s`;
  const words = [
    `seq=${update.sequence}`,
    `job=${update.job_id}`,
    `reason=${update.exit_reason}`,
    `exit_status=${update.exit_status}`,
    `wall_time=${wallTime}`,
  ];
  if (update.message) words.push(`message=${JSON.stringify(update.message)}`);
  return words.join(' ');
}

// A job's stdout or stderr, whole, as one line: job=ID stdout="..." (JSON-quoted). GetJobOutput
// streams it in chunks; a service that has none of it answers FAILED_PRECONDITION saying why.
async function printOutput(client, jobId, stream) {
  const name = stream === 'OUTPUT_STREAM_STDERR' ? 'stderr' : 'stdout';
  const chunks = [];
  try {
    for await (const response of client.GetJobOutput({ job_id: jobId, stream })) chunks.push(response.data);
  } catch (error) {
    if (error.code !== grpc.status.FAILED_PRECONDITION) throw error;
    console.log(`job=${jobId} ${name} none: ${error.details}`);
    return;
  }
  console.log(`job=${jobId} ${name}=${JSON.stringify(Buffer.concat(chunks).toString('utf8'))}`);
}

async function issueAndFollow(client, { count, cores, wallTime, variables, output, command }) {
  // A job set of our own: the stream then carries only these jobs' updates, and the variables
  // reach only these jobs.
  const jobSet = `node-example-${randomUUID()}`;
  for (const { name, value } of variables) {
    await promisify(client.SetEnv.bind(client))({ name, value, job_set: jobSet });
  }
  const spec = { command, job_set: jobSet, cores, wall_time_seconds: wallTime };
  const { job_ids: jobIds } = await promisify(client.IssueJobs.bind(client))({ specs: Array(count).fill(spec) });
  console.log(`issued jobs ${jobIds.join(' ')} in job set ${jobSet}`);

  const waiting = new Set(jobIds);
  const stream = client.GetUpdatedJob({ after_sequence: 0, job_set: jobSet });
  try {
    for await (const response of stream) {
      for (const update of response.updates) {  // none: a keep-alive
        console.log(describeUpdate(update));
        if (output) {
          await printOutput(client, update.job_id, 'OUTPUT_STREAM_STDOUT');
          await printOutput(client, update.job_id, 'OUTPUT_STREAM_STDERR');
        }
        waiting.delete(update.job_id);
      }
      if (waiting.size === 0) return;
    }
    throw new Error(`the update stream ended with jobs ${[...waiting].join(' ')} unreported`);
  } finally {
    stream.cancel();
  }
}

// A failed call carries a google.rpc.Status in its trailers, whose details say which field was
// wrong (BadRequest) or which resource was short (ErrorInfo). Its .proto files ship with the
// googleapis-common-protos Python package; GOOGLEAPIS_PROTOS names the folder holding google/.
function describeStatusDetails(error) {
  const [encoded] = error.metadata.get('grpc-status-details-bin');
  if (!encoded) return [];
  const protos = process.env.GOOGLEAPIS_PROTOS;
  if (!protos) return ['(set GOOGLEAPIS_PROTOS to read the structured details)'];
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) => path.join(protos, target);
  root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], { keepCase: true });
  const status = root.lookupType('google.rpc.Status').decode(encoded);
  return status.details.map((any) => {
    const type = root.lookupType(any.type_url.slice(any.type_url.lastIndexOf('/') + 1));
    return `${type.name} ${JSON.stringify(type.toObject(type.decode(any.value)))}`;
  });
}

async function main() {
  const options = parseCommandLine();
  const client = connect(options);
  try {
    await issueAndFollow(client, options);
  } catch (error) {
    if (typeof error.code !== 'number') throw error;  // not a gRPC status: Node prints it with its stack
    console.error(`error: ${grpc.status[error.code]}: ${error.details}`);
    for (const line of describeStatusDetails(error)) console.error(`  ${line}`);
    process.exitCode = 1;
  } finally {
    client.close();
  }
}

main();
